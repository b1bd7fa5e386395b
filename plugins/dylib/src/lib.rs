//! Loads rgd plugins from dynamic libraries: opens the library (libloading), reads and checks
//! its `#[repr(C)]` declaration (ABI version, exact rustc version, rgd-core version) before
//! calling anything in it, then lets it register its components into the host's
//! [`Registry`]. Every `unsafe` of the workspace is in this crate.
//!
//! The contract (proved on this toolchain, see the architecture guide): a library is never
//! unloaded (its code backs the components it registered, so it is leaked on purpose); panics
//! are caught on the plugin side by the guards of `rgd_core::plugin`; a library built by
//! another rustc or against another rgd-core is refused before any of its code runs.

use rgd_core::plugin::{
    ABI_VERSION, CORE_VERSION, DECLARATION_SYMBOL, PluginDeclaration, RUSTC_VERSION, Registrar,
};
use rgd_core::{Entry, Origin, Registry};
use std::path::{Path, PathBuf};

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum DylibError {
    /// The file could not be opened as a dynamic library.
    #[error("plugin {}: cannot load the library: {msg}", path.display())]
    Load {
        /// The library.
        path: PathBuf,
        /// The loader's message.
        msg: String,
    },
    /// The library has no declaration symbol.
    #[error(
        "plugin {}: not an rgd plugin (no `{DECLARATION_SYMBOL}` symbol; export one with `rgd_core::export_plugin!`)",
        path.display()
    )]
    NoDeclaration {
        /// The library.
        path: PathBuf,
    },
    /// The library was built for another ABI, compiler or rgd-core.
    #[error(
        "plugin {}: refused: built with {what} `{plugin}`, this rgd has `{host}`; rebuild the plugin with this rgd's toolchain and rgd-core version",
        path.display()
    )]
    Mismatch {
        /// The library.
        path: PathBuf,
        /// What differs (`ABI version`, `rustc`, `rgd-core`).
        what: &'static str,
        /// The plugin's.
        plugin: String,
        /// The host's.
        host: String,
    },
    /// The plugin's register function failed (or panicked).
    #[error("plugin {}: registration failed: {msg}", path.display())]
    Register {
        /// The library.
        path: PathBuf,
        /// The plugin's message.
        msg: String,
    },
    /// A component clashes with one already registered.
    #[error("plugin {}: {source}", path.display())]
    Duplicate {
        /// The library.
        path: PathBuf,
        /// The registry's error (names both origins).
        #[source]
        source: Box<rgd_core::Error>,
    },
}

/// Load the plugin library at `path` and add its components to `registry`; returns the
/// `(kind, type)` names it added. Nothing is added unless every component can be.
pub fn load(path: &Path, registry: &mut Registry) -> Result<Vec<(String, String)>, DylibError> {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    // SAFETY: loading a library runs its initializers; rgd plugins are Rust cdylibs whose only
    // initializers are their own statics. The declaration is checked before any plugin
    // function is called.
    let lib = unsafe { libloading::Library::new(&path) }.map_err(|e| DylibError::Load {
        path: path.clone(),
        msg: e.to_string(),
    })?;
    let decl: &PluginDeclaration = {
        // SAFETY: the symbol is a `static PluginDeclaration` (`#[repr(C)]`, written by
        // `export_plugin!`); its leading fields (versions) are plain data of fixed layout.
        let sym = unsafe { lib.get::<*const PluginDeclaration>(DECLARATION_SYMBOL.as_bytes()) }
            .map_err(|_| DylibError::NoDeclaration { path: path.clone() })?;
        let ptr: *const PluginDeclaration = *sym;
        if ptr.is_null() {
            return Err(DylibError::NoDeclaration { path: path.clone() });
        }
        // SAFETY: non-null pointer to a static that lives as long as the library, which is
        // never unloaded (leaked below).
        unsafe { &*ptr }
    };
    if decl.abi_version != ABI_VERSION {
        return Err(DylibError::Mismatch {
            path,
            what: "plugin ABI version",
            plugin: decl.abi_version.to_string(),
            host: ABI_VERSION.to_string(),
        });
    }
    let rustc = decl.rustc_version.to_string_lossy();
    if rustc != RUSTC_VERSION {
        return Err(DylibError::Mismatch {
            path,
            what: "rustc",
            plugin: rustc,
            host: RUSTC_VERSION.into(),
        });
    }
    let core = decl.core_version.to_string_lossy();
    if core != CORE_VERSION {
        return Err(DylibError::Mismatch {
            path,
            what: "rgd-core",
            plugin: core,
            host: CORE_VERSION.into(),
        });
    }
    let mut registrar = Registrar::new(Origin::Dylib {
        path: path.display().to_string(),
    });
    // same rustc and rgd-core (checked above): the Rust types behind the pointer agree
    let ok = (decl.register)(&mut registrar);
    let (entries, error) = registrar.finish();
    // never unload: the registered components' code lives in the library
    std::mem::forget(lib);
    if !ok || error.is_some() {
        return Err(DylibError::Register {
            path,
            msg: error.unwrap_or_else(|| "the plugin reported a failure".into()),
        });
    }
    add_all(registry, entries).map_err(|source| DylibError::Duplicate {
        path,
        source: Box::new(source),
    })
}

/// Whether the library at `path` is already loaded into `registry`.
pub fn is_loaded(registry: &Registry, path: &Path) -> bool {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let origin = Origin::Dylib {
        path: path.display().to_string(),
    };
    rgd_core::Kind::ALL
        .iter()
        .any(|k| registry.entries(*k).any(|e| e.origin == origin))
}

/// Add every entry, or none if one clashes.
fn add_all(
    registry: &mut Registry,
    entries: Vec<Entry>,
) -> Result<Vec<(String, String)>, rgd_core::Error> {
    let mut staged = registry.clone();
    let mut names = Vec::new();
    for e in entries {
        names.push((e.kind.to_string(), e.type_name.clone()));
        staged.add(e)?;
    }
    *registry = staged;
    Ok(names)
}
