//! Dynamic-library plugins, the plugin side: the declaration a plugin exports (checked by the
//! host before anything else), the [`Registrar`] through which it adds components, and the
//! guards that keep a panic from ever crossing the library boundary (a panic unwinding into
//! the host aborts it, even under `catch_unwind`).
//!
//! A plugin crate (`crate-type = ["cdylib"]`) exports itself in one line:
//!
//! ```ignore
//! rgd_core::export_plugin!(router "centroid" => Centroid, filter "min_words" => MinWords);
//! ```
//!
//! Kinds: `router`, `filter`, `labeler`.
//!
//! The contract (see `rgd-dylib`, the host side): same rustc and same rgd-core version as the
//! host; libraries are never unloaded; no custom global allocator; no runtime of its own.

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use crate::labels::{Labeler, Needs};
use crate::registry::{Component, Entry, Kind, Origin, from_table};
use crate::traits::{Context, Filter, FilterOutcome, Query, Router, Supervision, TrainedRouter};
use crate::{Error, Labels, Result, Split};

/// Version of the declaration layout and of the registrar contract.
pub const ABI_VERSION: u32 = 1;
/// The rgd-core version this code was built from.
pub const CORE_VERSION: &str = env!("CARGO_PKG_VERSION");
/// The exact rustc that built this code.
pub const RUSTC_VERSION: &str = env!("RGD_RUSTC_VERSION");
/// The name of the symbol a plugin exports.
pub const DECLARATION_SYMBOL: &str = "RGD_PLUGIN_DECLARATION";

/// A string of fixed size inside the `#[repr(C)]` declaration (readable before anything else
/// of the library is trusted).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct FixedStr {
    len: u32,
    bytes: [u8; 124],
}

impl FixedStr {
    /// Copy `s` (truncated to 124 bytes at a character boundary).
    pub const fn new(s: &str) -> FixedStr {
        let b = s.as_bytes();
        let mut n = if b.len() < 124 { b.len() } else { 124 };
        // a UTF-8 continuation byte starts with 0b10
        while n > 0 && n < b.len() && (b[n] & 0xC0) == 0x80 {
            n -= 1;
        }
        let mut bytes = [0u8; 124];
        let mut i = 0;
        while i < n {
            bytes[i] = b[i];
            i += 1;
        }
        FixedStr {
            len: n as u32,
            bytes,
        }
    }

    /// The text (invalid UTF-8 shown lossily).
    pub fn to_string_lossy(&self) -> String {
        let n = (self.len as usize).min(self.bytes.len());
        String::from_utf8_lossy(&self.bytes[..n]).into_owned()
    }
}

/// What a plugin library exports under [`DECLARATION_SYMBOL`].
#[repr(C)]
pub struct PluginDeclaration {
    /// [`ABI_VERSION`] of the plugin.
    pub abi_version: u32,
    /// [`RUSTC_VERSION`] of the plugin.
    pub rustc_version: FixedStr,
    /// [`CORE_VERSION`] of the plugin.
    pub core_version: FixedStr,
    /// Adds the plugin's components; `false` when it failed (the message is in the
    /// registrar). Called only after the versions matched.
    #[allow(improper_ctypes_definitions)]
    pub register: extern "C" fn(&mut Registrar) -> bool,
}

/// Collects a plugin's components (host-owned; the plugin only calls its methods).
#[derive(Debug)]
pub struct Registrar {
    origin: Origin,
    entries: Vec<Entry>,
    error: Option<String>,
}

impl Registrar {
    /// A registrar for components of this origin (the host creates it).
    pub fn new(origin: Origin) -> Registrar {
        Registrar {
            origin,
            entries: Vec::new(),
            error: None,
        }
    }

    /// The components added, and the plugin's error if registration failed.
    pub fn finish(self) -> (Vec<Entry>, Option<String>) {
        (self.entries, self.error)
    }

    /// Record a failed registration (called by the export macro).
    pub fn fail(&mut self, msg: String) {
        self.error = Some(msg);
    }

    /// Add a router type: its config is read from the pipeline table; every call to it and to
    /// what it trains is guarded against panics.
    pub fn router<T>(&mut self, type_name: &str)
    where
        T: Router + DeserializeOwned + JsonSchema + 'static,
    {
        let name = type_name.to_string();
        self.add::<T>(Kind::Router, type_name, move |t| {
            let c: T = from_table(t)?;
            Ok(Component::Router(Box::new(GuardedRouter {
                name: name.clone(),
                inner: Box::new(c),
            })))
        });
    }

    /// Add a labeler type (guarded like a router).
    pub fn labeler<T>(&mut self, type_name: &str)
    where
        T: Labeler + DeserializeOwned + JsonSchema + 'static,
    {
        let name = type_name.to_string();
        self.add::<T>(Kind::Labeler, type_name, move |t| {
            let c: T = from_table(t)?;
            Ok(Component::Labeler(Box::new(GuardedLabeler {
                name: name.clone(),
                inner: Box::new(c),
            })))
        });
    }

    /// Add a filter type (guarded like a router).
    pub fn filter<T>(&mut self, type_name: &str)
    where
        T: Filter + DeserializeOwned + JsonSchema + 'static,
    {
        let name = type_name.to_string();
        self.add::<T>(Kind::Filter, type_name, move |t| {
            let c: T = from_table(t)?;
            Ok(Component::Filter(Box::new(GuardedFilter {
                name: name.clone(),
                inner: Box::new(c),
            })))
        });
    }

    fn add<T: JsonSchema>(
        &mut self,
        kind: Kind,
        type_name: &str,
        build: impl Fn(toml::Table) -> std::result::Result<Component, String> + Send + Sync + 'static,
    ) {
        let what = format!("{kind} `{type_name}`");
        let build = move |t: toml::Table| {
            guard(&what, "build", || build(t).map_err(Error::Data)).map_err(|e| e.to_string())
        };
        self.entries.push(Entry::from_schema(
            kind,
            type_name,
            &schemars::schema_for!(T),
            self.origin.clone(),
            Arc::new(build),
        ));
    }
}

/// The text of a panic payload.
pub fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(non-text panic payload)".into())
}

/// Run `f`, turning a panic into an error naming the component and the call.
pub fn guard<T>(component: &str, call: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => Err(Error::component(
            component.to_string(),
            format!("plugin panicked in {call}: {}", panic_message(p.as_ref())),
        )),
    }
}

/// Register under a guard (the export macro's register function).
pub fn register_guarded(r: &mut Registrar, f: impl FnOnce(&mut Registrar)) -> bool {
    match catch_unwind(AssertUnwindSafe(|| f(r))) {
        Ok(()) => r.error.is_none(),
        Err(p) => {
            r.fail(format!(
                "plugin panicked while registering: {}",
                panic_message(p.as_ref())
            ));
            false
        }
    }
}

/// A plugin's router behind panic guards.
#[derive(Debug)]
pub struct GuardedRouter {
    name: String,
    inner: Box<dyn Router>,
}

impl Router for GuardedRouter {
    fn train(
        &self,
        train: &Split,
        models: &[String],
        ctx: &Context,
    ) -> Result<Box<dyn TrainedRouter>> {
        let what = format!("router `{}`", self.name);
        let t = guard(&what, "train", || self.inner.train(train, models, ctx))?;
        Ok(Box::new(GuardedTrained {
            name: self.name.clone(),
            inner: t,
        }))
    }
    fn supervision(&self) -> Supervision {
        catch_unwind(AssertUnwindSafe(|| self.inner.supervision())).unwrap_or(Supervision::None)
    }
    fn labels(&self) -> Option<&str> {
        catch_unwind(AssertUnwindSafe(|| self.inner.labels())).unwrap_or(None)
    }
    fn check(&self) -> Result<()> {
        guard(&format!("router `{}`", self.name), "check", || {
            self.inner.check()
        })
    }
}

/// A plugin's trained router behind panic guards.
#[derive(Debug, Serialize, Deserialize)]
pub struct GuardedTrained {
    name: String,
    inner: Box<dyn TrainedRouter>,
}

#[typetag::serde(name = "rgd_plugin_guarded")]
impl TrainedRouter for GuardedTrained {
    fn models(&self) -> &[String] {
        self.inner.models()
    }
    fn score(&self, query: &Query<'_>, out: &mut [f64]) -> Result<()> {
        guard(&format!("router `{}`", self.name), "score", || {
            self.inner.score(query, out)
        })
    }
    fn score_split(&self, split: &Split) -> Result<ndarray::Array2<f64>> {
        guard(&format!("router `{}`", self.name), "score", || {
            self.inner.score_split(split)
        })
    }
    fn explain(&self, query: &Query<'_>) -> Option<String> {
        catch_unwind(AssertUnwindSafe(|| self.inner.explain(query))).unwrap_or(None)
    }
    fn validate(&self) -> Result<()> {
        guard(&format!("router `{}`", self.name), "validate", || {
            self.inner.validate()
        })
    }
}

/// A plugin's filter behind a panic guard.
#[derive(Debug)]
pub struct GuardedFilter {
    name: String,
    inner: Box<dyn Filter>,
}

impl Filter for GuardedFilter {
    fn filter(&self, split: &Split, models: &[String], ctx: &Context) -> Result<FilterOutcome> {
        guard(&format!("filter `{}`", self.name), "filter", || {
            self.inner.filter(split, models, ctx)
        })
    }
}

/// A plugin's labeler behind panic guards.
#[derive(Debug)]
pub struct GuardedLabeler {
    name: String,
    inner: Box<dyn Labeler>,
}

impl Labeler for GuardedLabeler {
    fn label(&self, split: &Split) -> Result<Labels> {
        guard(&format!("labeler `{}`", self.name), "label", || {
            self.inner.label(split)
        })
    }
    fn needs(&self) -> Needs {
        catch_unwind(AssertUnwindSafe(|| self.inner.needs())).unwrap_or_default()
    }
    fn check(&self) -> Result<()> {
        guard(&format!("labeler `{}`", self.name), "check", || {
            self.inner.check()
        })
    }
}

/// Export this crate as an rgd plugin (one line in a `cdylib` crate):
/// `rgd_core::export_plugin!(router "centroid" => Centroid, filter "min_words" => MinWords);`
/// Each config type implements `Deserialize`, `schemars::JsonSchema` and the kind's trait.
#[macro_export]
macro_rules! export_plugin {
    ($($kind:ident $name:literal => $ty:ty),+ $(,)?) => {
        $crate::export_plugin!(@versions $crate::plugin::RUSTC_VERSION, $crate::plugin::CORE_VERSION; $($kind $name => $ty),+);
    };
    // hidden: declare other versions (how the tests build mismatched libraries)
    (@versions $rustc:expr, $core:expr; $($kind:ident $name:literal => $ty:ty),+) => {
        $crate::export_plugin!(@declare $crate::plugin::ABI_VERSION, $rustc, $core; $($kind $name => $ty),+);
    };
    (@declare $abi:expr, $rustc:expr, $core:expr; $($kind:ident $name:literal => $ty:ty),+) => {
        /// The rgd plugin declaration (read by the host before anything else).
        #[unsafe(no_mangle)]
        pub static RGD_PLUGIN_DECLARATION: $crate::plugin::PluginDeclaration =
            $crate::plugin::PluginDeclaration {
                abi_version: $abi,
                rustc_version: $crate::plugin::FixedStr::new($rustc),
                core_version: $crate::plugin::FixedStr::new($core),
                register: __rgd_plugin_register,
            };
        #[allow(improper_ctypes_definitions)]
        extern "C" fn __rgd_plugin_register(r: &mut $crate::plugin::Registrar) -> bool {
            $crate::plugin::register_guarded(r, |r| {
                $( r.$kind::<$ty>($name); )+
            })
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_strings_keep_short_text_and_cut_long_text_at_a_character() {
        assert_eq!(FixedStr::new("0.1.0").to_string_lossy(), "0.1.0");
        let long = "é".repeat(100); // 200 bytes
        let cut = FixedStr::new(&long).to_string_lossy();
        assert_eq!(cut, "é".repeat(62));
    }

    #[test]
    fn a_panic_becomes_an_error_naming_the_component_and_call() {
        let e = guard::<()>("router `x`", "score", || panic!("boom {}", 7)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "router `x`: plugin panicked in score: boom 7"
        );
        let mut r = Registrar::new(Origin::Dylib { path: "p".into() });
        assert!(!register_guarded(&mut r, |_| panic!("at register")));
        let (entries, err) = r.finish();
        assert!(entries.is_empty());
        assert_eq!(
            err.as_deref(),
            Some("plugin panicked while registering: at register")
        );
    }
}
