//! The component registry: `type` name -> factory, per component kind.
//!
//! Built-in crates register with [`crate::register!`] (collected by `inventory` at link time);
//! later sources (dynamic libraries, processes) add entries with [`Registry::add`]. The
//! registry, not typetag, is the source of truth for what a TOML `type` names: typetag cannot
//! see types that live in a dynamically loaded library.

use schemars::Schema;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::labels::Labeler;
use crate::traits::{DataSource, Embedder, Filter, Generator, LlmBackend, QuestionSource, Router};
use crate::{Error, Result};

/// Every component kind, written once: its variant, trait, label and `Registry` builder.
/// A new kind is one line here (plus its arm in [`crate::register!`]).
macro_rules! kinds {
    ($( $(#[doc = $doc:literal])* $variant:ident: $tr:ident, $label:literal, $build:ident $(, check = $check:expr)?; )*) => {
        /// The kinds of component a pipeline is assembled from.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(rename_all = "snake_case")]
        pub enum Kind {
            $( $(#[doc = $doc])* $variant, )*
        }

        impl Kind {
            /// Every kind, in display order.
            pub const ALL: [Kind; [$(stringify!($variant)),*].len()] = [$(Kind::$variant),*];
        }

        impl fmt::Display for Kind {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(match self {
                    $( Kind::$variant => $label, )*
                })
            }
        }

        /// A built component.
        #[derive(Debug)]
        pub enum Component {
            $( #[doc = concat!("A ", $label, ".")] $variant(Box<dyn $tr>), )*
        }

        $(
            impl Built for Box<dyn $tr> {
                const KIND: Kind = Kind::$variant;
                fn from_component(c: Component) -> std::result::Result<Self, Component> {
                    match c {
                        Component::$variant(x) => Ok(x),
                        #[allow(unreachable_patterns)]
                        other => Err(other),
                    }
                }
                $( fn check(&self) -> std::result::Result<(), String> {
                    let check: fn(&Self) -> std::result::Result<(), String> = $check;
                    check(self)
                } )?
            }
        )*

        impl Registry {
            $(
                #[doc = concat!("Build a ", $label, " from its table (`type` names it).")]
                pub fn $build(&self, table: toml::Table, context: &str) -> Result<Box<dyn $tr>> {
                    self.build_as(table, context)
                }
            )*
        }
    };
}

/// A component type the registry builds: which kind it is and how to take it out of a
/// [`Component`].
pub trait Built: Sized {
    /// Its kind.
    const KIND: Kind;
    /// The component, or the component back when it is of another kind.
    fn from_component(c: Component) -> std::result::Result<Self, Component>;
    /// Checks a built component of this kind must pass (its parameters' ranges).
    fn check(&self) -> std::result::Result<(), String> {
        Ok(())
    }
}

kinds! {
    /// Provides a dataset ([`DataSource`]).
    DataSource: DataSource, "data source", build_data_source;
    /// Provides questions ([`QuestionSource`]).
    Questions: QuestionSource, "question source", build_questions;
    /// Writes questions ([`Generator`]).
    Generator: Generator, "generator", build_generator;
    /// Removes questions ([`Filter`]).
    Filter: Filter, "filter", build_filter;
    /// Labels what routers learn from ([`Labeler`]).
    Labeler: Labeler, "labeler", build_labeler,
        check = |l| Labeler::check(l.as_ref()).map_err(|e| e.to_string());
    /// Routes queries ([`Router`]).
    Router: Router, "router", build_router,
        check = |r| Router::check(r.as_ref()).map_err(|e| e.to_string());
    /// Embeds text ([`Embedder`]).
    Embedder: Embedder, "embedder", build_embedder;
    /// An LLM ([`LlmBackend`]).
    Backend: LlmBackend, "backend", build_backend;
}

/// A factory: a component's TOML table (without `type`) -> the component, or a message.
pub type BuildFn = fn(toml::Table) -> std::result::Result<Component, String>;

/// A static registration, submitted by [`crate::register!`].
pub struct Registration {
    /// The component kind.
    pub kind: Kind,
    /// The TOML `type` name.
    pub type_name: &'static str,
    /// The registering crate (module path).
    pub crate_name: &'static str,
    /// JSON schema of the config (doc comment = description, fields, defaults).
    pub schema: fn() -> Schema,
    /// The factory.
    pub build: BuildFn,
    /// The one-line documentation, when it is not the config's (an alias's).
    pub doc: Option<&'static str>,
}

inventory::collect!(Registration);

/// Deserialize a config struct from a TOML table (used by the registration macro). The error
/// names the key path inside the table (`hidden[1]: invalid type: string "x", expected usize`),
/// so a wrong type deep in a nested table still says where it is.
pub fn from_table<T: DeserializeOwned>(t: toml::Table) -> std::result::Result<T, String> {
    serde_path_to_error::deserialize(toml::Value::Table(t)).map_err(|e| {
        let path = e.path().to_string();
        let msg = e.inner().message().to_string();
        // serde's own messages name a missing or unknown field already; the path is where
        if path == "." || path.is_empty() {
            msg
        } else {
            format!("`{path}`: {msg}")
        }
    })
}

/// Register a component with the built-in registry:
/// `rgd_core::register!(router, "cascal", CascalConfig);` where the config struct implements
/// `Deserialize`, `schemars::JsonSchema` and the kind's trait (`Router` here).
/// Kinds: `data_source`, `questions`, `generator`, `filter`, `labeler`, `router`, `embedder`,
/// `backend`.
#[macro_export]
macro_rules! register {
    (data_source, $($rest:tt)*) => { $crate::__register!(DataSource, $($rest)*); };
    (questions, $($rest:tt)*) => { $crate::__register!(Questions, $($rest)*); };
    (generator, $($rest:tt)*) => { $crate::__register!(Generator, $($rest)*); };
    (filter, $($rest:tt)*) => { $crate::__register!(Filter, $($rest)*); };
    (labeler, $($rest:tt)*) => { $crate::__register!(Labeler, $($rest)*); };
    (router, $($rest:tt)*) => { $crate::__register!(Router, $($rest)*); };
    (embedder, $($rest:tt)*) => { $crate::__register!(Embedder, $($rest)*); };
    (backend, $($rest:tt)*) => { $crate::__register!(Backend, $($rest)*); };
}

/// Implementation detail of [`register!`]. With a fourth argument, the config is turned into
/// the component by that function (`fn(Config) -> Result<Box<dyn Trait>, impl Display>`); a
/// fifth, `doc = "..."`, documents the type instead of the config's doc comment (an alias:
/// `register!(router, "consensus_knn", Knn, Knn::consensus, doc = "...")`).
#[doc(hidden)]
#[macro_export]
macro_rules! __register {
    ($variant:ident, $name:literal, $ty:ty) => {
        $crate::__register!($variant, $name, $ty, ::std::boxed::Box::new);
    };
    ($variant:ident, $name:literal, $ty:ty, $f:path) => {
        $crate::__register!(@with $variant, $name, $ty, $f, ::std::option::Option::None);
    };
    ($variant:ident, $name:literal, $ty:ty, $f:path, doc = $doc:literal) => {
        $crate::__register!(@with $variant, $name, $ty, $f, ::std::option::Option::Some($doc));
    };
    (@with $variant:ident, $name:literal, $ty:ty, $f:path, $doc:expr) => {
        $crate::inventory::submit! {
            $crate::registry::Registration {
                kind: $crate::registry::Kind::$variant,
                type_name: $name,
                crate_name: module_path!(),
                schema: || $crate::schemars::schema_for!($ty),
                build: |t| {
                    let c: $ty = $crate::registry::from_table(t)?;
                    let built = $crate::registry::IntoBuilt::into_built($f(c))?;
                    Ok($crate::registry::Component::$variant(built))
                },
                doc: $doc,
            }
        }
    };
}

/// What a build function may return: the component, or a result with a displayable error.
pub trait IntoBuilt<T> {
    /// Normalize to `Result<T, String>`.
    fn into_built(self) -> std::result::Result<T, String>;
}

impl<T> IntoBuilt<T> for T {
    fn into_built(self) -> std::result::Result<T, String> {
        Ok(self)
    }
}

impl<T, E: std::fmt::Display> IntoBuilt<T> for std::result::Result<T, E> {
    fn into_built(self) -> std::result::Result<T, String> {
        self.map_err(|e| e.to_string())
    }
}

/// Where a component comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "origin", rename_all = "snake_case")]
pub enum Origin {
    /// Compiled into this binary, by the named crate.
    BuiltIn {
        /// The crate (module path) that registered it.
        crate_name: String,
    },
    /// Loaded from a dynamic library.
    Dylib {
        /// The library's path.
        path: String,
    },
    /// A Python class registered in the running interpreter (`rgd.register_router`).
    Python {
        /// The class's qualified name.
        class: String,
    },
    /// Served by another process.
    Process {
        /// The command line.
        command: Vec<String>,
    },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::BuiltIn { crate_name } => write!(f, "built-in ({crate_name})"),
            Origin::Dylib { path } => write!(f, "dylib {path}"),
            Origin::Process { command } => write!(f, "process `{}`", command.join(" ")),
            Origin::Python { class } => write!(f, "Python class {class}"),
        }
    }
}

/// One documented config field of a component.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FieldDoc {
    /// The TOML key.
    pub name: String,
    /// JSON-schema type (`number`, `string`, `integer`, ...).
    pub ty: String,
    /// Default value, as JSON; `None` for a required field.
    pub default: Option<serde_json::Value>,
    /// The field's doc comment.
    pub doc: String,
}

/// A registered component type.
#[derive(Clone)]
pub struct Entry {
    /// Its kind.
    pub kind: Kind,
    /// Its TOML `type` name.
    pub type_name: String,
    /// One-line documentation.
    pub doc: String,
    /// Its config fields.
    pub fields: Vec<FieldDoc>,
    /// Where it comes from.
    pub origin: Origin,
    /// Its factory.
    pub build: Arc<dyn Fn(toml::Table) -> std::result::Result<Component, String> + Send + Sync>,
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("kind", &self.kind)
            .field("type_name", &self.type_name)
            .field("origin", &self.origin)
            .finish()
    }
}

impl Entry {
    /// Build an entry from a JSON schema (doc and fields are read from it).
    pub fn from_schema(
        kind: Kind,
        type_name: impl Into<String>,
        schema: &Schema,
        origin: Origin,
        build: Arc<dyn Fn(toml::Table) -> std::result::Result<Component, String> + Send + Sync>,
    ) -> Entry {
        let (doc, fields) = describe_schema(schema);
        Entry {
            kind,
            type_name: type_name.into(),
            doc,
            fields,
            origin,
            build,
        }
    }
}

/// First line of the schema's description and its documented properties.
pub fn describe_schema(schema: &Schema) -> (String, Vec<FieldDoc>) {
    let v = schema.as_value();
    let doc = v
        .get("description")
        .and_then(|d| d.as_str())
        .map(|d| d.split("\n\n").next().unwrap_or("").replace('\n', " "))
        .unwrap_or_default();
    let required: Vec<&str> = v
        .get("required")
        .and_then(|r| r.as_array())
        .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
        .unwrap_or_default();
    // a transparent newtype's schema is a reference to its inner struct's
    let target = v
        .get("$ref")
        .or_else(|| {
            v.get("allOf")
                .and_then(|a| a.get(0))
                .and_then(|x| x.get("$ref"))
        })
        .and_then(|r| r.as_str())
        .and_then(|r| r.rsplit('/').next())
        .and_then(|name| {
            v.get("$defs")
                .or_else(|| v.get("definitions"))
                .and_then(|d| d.get(name))
        })
        .unwrap_or(v);
    let required: Vec<&str> = if target.get("required").is_some() {
        target
            .get("required")
            .and_then(|r| r.as_array())
            .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
            .unwrap_or_default()
    } else {
        required
    };
    let mut fields = Vec::new();
    if let Some(props) = target.get("properties").and_then(|p| p.as_object()) {
        let defs = v.get("$defs").or_else(|| v.get("definitions"));
        for (name, p) in props {
            // a field whose type is an enum (or an optional one) names its values
            let resolved = p
                .get("$ref")
                .or_else(|| {
                    p.get("anyOf")
                        .and_then(|a| a.as_array())
                        .and_then(|a| a.iter().find_map(|x| x.get("$ref")))
                })
                .and_then(|r| r.as_str())
                .and_then(|r| r.rsplit('/').next())
                .and_then(|n| defs.and_then(|d| d.get(n)))
                .unwrap_or(p);
            let values: Vec<String> = resolved
                .get("enum")
                .and_then(|e| e.as_array())
                .map(|e| {
                    e.iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect()
                })
                .or_else(|| {
                    resolved.get("oneOf").and_then(|o| o.as_array()).map(|o| {
                        o.iter()
                            .filter_map(|x| {
                                x.get("const")
                                    .or_else(|| x.get("enum").and_then(|e| e.get(0)))
                                    .and_then(|c| c.as_str())
                                    .map(str::to_string)
                            })
                            .collect()
                    })
                })
                .unwrap_or_default();
            let ty = if !values.is_empty() {
                values.join("|")
            } else {
                match p.get("type") {
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(serde_json::Value::Array(a)) => a
                        .iter()
                        .filter_map(|x| x.as_str())
                        .collect::<Vec<_>>()
                        .join("|"),
                    _ => "value".to_string(),
                }
            };
            let default = p.get("default").cloned().or_else(|| {
                (!required.contains(&name.as_str())).then_some(serde_json::Value::Null)
            });
            fields.push(FieldDoc {
                name: name.clone(),
                ty,
                default,
                doc: p
                    .get("description")
                    .and_then(|d| d.as_str())
                    .unwrap_or("")
                    .replace('\n', " "),
            });
        }
    }
    (doc, fields)
}

/// The host-owned registry of every component type.
#[derive(Debug, Default, Clone)]
pub struct Registry {
    entries: BTreeMap<(Kind, String), Entry>,
}

impl Registry {
    /// An empty registry.
    pub fn empty() -> Registry {
        Registry::default()
    }

    /// Every component linked into this binary (collected by `inventory`).
    pub fn builtin() -> Result<Registry> {
        let mut r = Registry::empty();
        for reg in inventory::iter::<Registration> {
            let build = reg.build;
            let mut entry = Entry::from_schema(
                reg.kind,
                reg.type_name,
                &(reg.schema)(),
                Origin::BuiltIn {
                    crate_name: reg
                        .crate_name
                        .split("::")
                        .next()
                        .unwrap_or(reg.crate_name)
                        .replace('_', "-"),
                },
                Arc::new(build),
            );
            if let Some(doc) = reg.doc {
                entry.doc = doc.to_string();
            }
            r.add(entry)?;
        }
        Ok(r)
    }

    /// Add an entry; a second entry with the same kind and name is refused.
    pub fn add(&mut self, entry: Entry) -> Result<()> {
        let key = (entry.kind, entry.type_name.clone());
        if let Some(first) = self.entries.get(&key) {
            return Err(Error::DuplicateType {
                kind: entry.kind.to_string(),
                name: entry.type_name,
                first: first.origin.to_string(),
                second: entry.origin.to_string(),
            });
        }
        self.entries.insert(key, entry);
        Ok(())
    }

    /// The entries of one kind, sorted by name.
    pub fn entries(&self, kind: Kind) -> impl Iterator<Item = &Entry> {
        self.entries
            .range((kind, String::new())..)
            .take_while(move |((k, _), _)| *k == kind)
            .map(|(_, e)| e)
    }

    /// Look up one entry.
    pub fn get(&self, kind: Kind, name: &str) -> Option<&Entry> {
        self.entries.get(&(kind, name.to_string()))
    }

    /// Build the component named by `table["type"]`; `context` (file, table, line) prefixes
    /// every error.
    pub fn build(&self, kind: Kind, mut table: toml::Table, context: &str) -> Result<Component> {
        let name = match table.remove("type") {
            Some(toml::Value::String(s)) => s,
            Some(other) => {
                return Err(Error::Config {
                    context: context.to_string(),
                    msg: format!("`type` must be a string, found {}", other.type_str()),
                });
            }
            None => {
                return Err(Error::Config {
                    context: context.to_string(),
                    msg: format!("missing field `type` (the {kind} type to use)"),
                });
            }
        };
        let entry = self.get(kind, &name).ok_or_else(|| Error::UnknownType {
            context: context.to_string(),
            kind: kind.to_string(),
            name: name.clone(),
            known: {
                let k: Vec<&str> = self.entries(kind).map(|e| e.type_name.as_str()).collect();
                if k.is_empty() {
                    "(none)".to_string()
                } else {
                    k.join(", ")
                }
            },
        })?;
        (entry.build)(table).map_err(|msg| Error::Config {
            context: format!("{context} (type `{name}`)"),
            msg,
        })
    }

    /// Build a component of type `T`'s kind from its table and run the kind's checks.
    pub fn build_as<T: Built>(&self, table: toml::Table, context: &str) -> Result<T> {
        let c = T::from_component(self.build(T::KIND, table, context)?)
            .map_err(|other| wrong_kind(context, T::KIND, &other))?;
        c.check().map_err(|msg| Error::Config {
            context: context.to_string(),
            msg,
        })?;
        Ok(c)
    }
}

fn wrong_kind(context: &str, want: Kind, got: &Component) -> Error {
    Error::Config {
        context: context.to_string(),
        msg: format!("the factory returned {got:?} where a {want} was expected"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traits::{Context, DataSource};

    /// A data source for the registry tests.
    #[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
    #[serde(deny_unknown_fields)]
    struct Dummy {
        /// A required number.
        n: usize,
        /// An optional name.
        #[serde(default)]
        name: Option<String>,
    }

    impl DataSource for Dummy {
        fn load(&self, _ctx: &Context) -> Result<crate::Dataset> {
            Err(Error::Data(format!("dummy {} {:?}", self.n, self.name)))
        }
    }

    crate::register!(data_source, "dummy_for_tests", Dummy);

    fn table(s: &str) -> toml::Table {
        toml::from_str(s).unwrap()
    }

    #[test]
    fn builds_documents_and_refuses_duplicates() {
        let mut r = Registry::builtin().unwrap();
        let e = r.get(Kind::DataSource, "dummy_for_tests").unwrap().clone();
        assert_eq!(e.doc, "A data source for the registry tests.");
        let n = e.fields.iter().find(|f| f.name == "n").unwrap();
        assert_eq!(
            (n.default.clone(), n.doc.as_str()),
            (None, "A required number.")
        );
        let built = r
            .build_data_source(table("type = \"dummy_for_tests\"\nn = 3"), "here")
            .unwrap();
        let msg = built.load(&Context::new(".")).unwrap_err().to_string();
        assert_eq!(msg, "dummy 3 None");
        let err = r
            .build_data_source(
                table("type = \"dummy_for_tests\"\nm = 3"),
                "f.toml:2 [data]",
            )
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("f.toml:2 [data]") && err.contains("unknown field `m`"),
            "{err}"
        );
        let err = r
            .build_data_source(table("type = \"nope\""), "ctx")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown data source type `nope`") && err.contains("dummy_for_tests"));
        let err = r
            .build_data_source(table("n = 1"), "ctx")
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing field `type`"));
        let err = r
            .build_data_source(table("type = \"dummy_for_tests\"\nn = \"three\""), "ctx")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`n`: invalid type: string"), "{err}");
        let dup = r.add(Entry {
            origin: Origin::Dylib {
                path: "/x.so".into(),
            },
            ..e
        });
        let msg = dup.unwrap_err().to_string();
        assert!(
            msg.contains("duplicate data source type `dummy_for_tests`") && msg.contains("/x.so")
        );
    }
}
