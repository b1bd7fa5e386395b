//! What registering a Python class as a component type shares, whatever its kind: the name
//! check, the class's qualified name and one-line doc, and the schema `rgd plugins` shows.

use pyo3::prelude::*;
use rgd_core::Kind;

/// A class's qualified name and the first line of its docstring (`fallback` without one).
pub struct Described {
    /// `__qualname__`.
    pub qualname: String,
    /// The docstring's first line.
    pub doc: String,
}

/// Check that `name` may become a `kind` type (a valid table name, not a built-in type) and
/// that the class has every method of `methods` (`needs` says what a class of this kind
/// needs, for the message); then describe it.
pub fn check_and_describe(
    kind: Kind,
    name: &str,
    cls: &Bound<'_, PyAny>,
    methods: &[&str],
    needs: &str,
    fallback: &str,
) -> PyResult<Described> {
    rgd_core::pipeline::check_name(name).map_err(crate::err)?;
    let builtin = rgd_components::registry().map_err(crate::err)?;
    if builtin.get(kind, name).is_some() {
        return Err(crate::err(format!(
            "`{name}` is a built-in {kind} type; register the class under another name"
        )));
    }
    for method in methods {
        if !cls.hasattr(*method)? {
            return Err(crate::err(format!(
                "the class registered as `{name}` has no `{method}` method (a {kind} class needs {needs})"
            )));
        }
    }
    let qualname: String = cls.getattr("__qualname__")?.extract()?;
    let doc: String = cls
        .getattr("__doc__")?
        .extract::<Option<String>>()?
        .unwrap_or_default()
        .trim()
        .lines()
        .next()
        .unwrap_or(fallback)
        .to_string();
    Ok(Described { qualname, doc })
}

/// The schema of a class's type: its doc, no documented fields (the table's keys go to the
/// class as keyword arguments).
pub fn schema(doc: &str) -> rgd_core::Result<schemars::Schema> {
    schemars::Schema::try_from(serde_json::json!({ "description": doc, "type": "object" }))
        .map_err(|e| rgd_core::Error::Data(e.to_string()))
}
