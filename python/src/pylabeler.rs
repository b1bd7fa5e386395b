//! Labelers written in Python. A class with `label(split) -> ndarray` registered with
//! `rgd.register_labeler(name, cls)` becomes a labeler `type` usable in pipelines run from
//! Python (`[labelers.NAME] type = "name"`, or `labels = "name"` on a router). Its table's keys
//! are passed to the class as keyword arguments. An exception fails the routers that learn
//! from it, naming the labeler.

use crate::arrays::split_dict;
use numpy::PyReadonlyArray2;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use rgd_core::registry::{Component, Entry, Origin};
use rgd_core::{Kind, Labeler, Labels, Needs, Registry, Split};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// A registered class and whether it reads the answer key.
struct Registered {
    class: Py<PyAny>,
    qualname: String,
    doc: String,
    reads_key: bool,
}

/// Every labeler class registered in this interpreter, by type name.
static CLASSES: Mutex<BTreeMap<String, Registered>> = Mutex::new(BTreeMap::new());

fn classes() -> std::sync::MutexGuard<'static, BTreeMap<String, Registered>> {
    CLASSES.lock().unwrap_or_else(|p| p.into_inner())
}

/// Register a Python class as the labeler type `name`; `reads_key` says whether its labels
/// use the answer key (then routers learning from it are query-answer).
#[pyfunction]
#[pyo3(signature = (name, cls, reads_key=false))]
pub fn register_labeler(
    py: Python<'_>,
    name: &str,
    cls: Py<PyAny>,
    reads_key: bool,
) -> PyResult<()> {
    let described = crate::pyclass::check_and_describe(
        Kind::Labeler,
        name,
        cls.bind(py),
        &["label"],
        "label(split)",
        "a labeler written in Python",
    )?;
    classes().insert(
        name.to_string(),
        Registered {
            class: cls,
            qualname: described.qualname,
            doc: described.doc,
            reads_key,
        },
    );
    Ok(())
}

/// Add every registered class to `registry` as a labeler type.
pub fn add_to(registry: &mut Registry) -> rgd_core::Result<()> {
    for (name, r) in classes().iter() {
        let schema = crate::pyclass::schema(&r.doc)?;
        let (type_name, reads_key) = (name.clone(), r.reads_key);
        registry.add(Entry::from_schema(
            Kind::Labeler,
            name.clone(),
            &schema,
            Origin::Python {
                class: r.qualname.clone(),
            },
            Arc::new(move |table: toml::Table| {
                let config = serde_json::to_value(&table).map_err(|e| e.to_string())?;
                Ok(Component::Labeler(Box::new(PyLabeler {
                    type_name: type_name.clone(),
                    config,
                    reads_key,
                })))
            }),
        ))?;
    }
    Ok(())
}

/// The labeler of a registered class, configured by its table.
#[derive(Debug)]
struct PyLabeler {
    type_name: String,
    config: serde_json::Value,
    reads_key: bool,
}

impl Labeler for PyLabeler {
    fn label(&self, split: &Split) -> rgd_core::Result<Labels> {
        let (n, m) = (split.len(), split.n_models());
        let values = Python::attach(|py| -> PyResult<ndarray::Array2<f64>> {
            let cls = classes()
                .get(&self.type_name)
                .map(|r| r.class.clone_ref(py))
                .ok_or_else(|| {
                    crate::err(format!(
                        "no Python class is registered as labeler `{}` in this interpreter",
                        self.type_name
                    ))
                })?;
            let kwargs = py
                .import("json")?
                .call_method1("loads", (self.config.to_string(),))?;
            let instance = cls.call(py, (), Some(kwargs.downcast::<PyDict>()?))?;
            let ns = py
                .import("types")?
                .getattr("SimpleNamespace")?
                .call((), Some(&split_dict(py, split)?))?;
            let got = instance.call_method1(py, "label", (ns,))?;
            let arr = py
                .import("numpy")?
                .call_method1("asarray", (got, "float64"))?;
            let arr: PyReadonlyArray2<f64> = arr.extract().map_err(|_| {
                crate::err(format!(
                    "label() must return a [question, model] array of shape ({n}, {m})"
                ))
            })?;
            Ok(arr.as_array().to_owned())
        })
        .map_err(|e| {
            rgd_core::Error::component(format!("Python labeler `{}`", self.type_name), e)
        })?;
        // the shape and the [0, 1] range are checked where the labels enter (Context::labels)
        Ok(Labels {
            kind: self.type_name.clone(),
            values,
        })
    }
    fn needs(&self) -> Needs {
        Needs {
            key: self.reads_key,
            letters: !self.reads_key,
        }
    }
}
