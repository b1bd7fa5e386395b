//! Routers written in Python. A class with `train(split)` and `score(split) -> ndarray`
//! registered with `rgd.register_router(name, cls)` becomes a router `type` usable in
//! pipelines run from Python, next to the built-in ones. Its table's keys are passed to the
//! class as keyword arguments; its artifact state is the JSON `state()` returns, and
//! `cls.from_state(state)` restores it. An exception fails that router only, naming it.

use crate::arrays::{query_split, split_dict};
use numpy::PyReadonlyArray2;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use rgd_core::registry::{Component, Entry, Origin};
use rgd_core::{Context, Kind, Query, Registry, Router, Split, Supervision, TrainedRouter};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

/// A registered class: the class and what its router learns from.
struct Registered {
    class: Py<PyAny>,
    qualname: String,
    doc: String,
    supervision: Supervision,
}

/// Every class registered in this interpreter, by router type name.
static CLASSES: Mutex<BTreeMap<String, Registered>> = Mutex::new(BTreeMap::new());

fn classes() -> std::sync::MutexGuard<'static, BTreeMap<String, Registered>> {
    CLASSES.lock().unwrap_or_else(|p| p.into_inner())
}

/// Register a Python class as the router type `name`. `supervision` says what it learns
/// from: `query_answer` (the answer key), `query_only` (the pool's answers) or `none`.
#[pyfunction]
#[pyo3(signature = (name, cls, supervision="query_answer"))]
pub fn register_router(
    py: Python<'_>,
    name: &str,
    cls: Py<PyAny>,
    supervision: &str,
) -> PyResult<()> {
    let described = crate::pyclass::check_and_describe(
        Kind::Router,
        name,
        cls.bind(py),
        &["train", "score"],
        "train(split) and score(split)",
        "a router written in Python",
    )?;
    let supervision: Supervision = serde_json::from_value(serde_json::Value::String(
        supervision.to_string(),
    ))
    .map_err(|_| {
        crate::err(format!(
            "supervision `{supervision}`: expected query_answer, query_only or none"
        ))
    })?;
    classes().insert(
        name.to_string(),
        Registered {
            class: cls,
            qualname: described.qualname,
            doc: described.doc,
            supervision,
        },
    );
    Ok(())
}

/// Add every registered class to `registry` as a router type.
pub fn add_to(registry: &mut Registry) -> rgd_core::Result<()> {
    for (name, r) in classes().iter() {
        let schema = crate::pyclass::schema(&r.doc)?;
        let (type_name, supervision) = (name.clone(), r.supervision);
        registry.add(Entry::from_schema(
            Kind::Router,
            name.clone(),
            &schema,
            Origin::Python {
                class: r.qualname.clone(),
            },
            Arc::new(move |table: toml::Table| {
                let config = serde_json::to_value(&table).map_err(|e| e.to_string())?;
                Ok(Component::Router(Box::new(PyRouter {
                    type_name: type_name.clone(),
                    config,
                    supervision,
                })))
            }),
        ))?;
    }
    Ok(())
}

/// A Python exception as the error of the router it happened in.
fn failed(type_name: &str, e: PyErr) -> rgd_core::Error {
    let msg = Python::attach(|py| {
        let tb = e
            .traceback(py)
            .and_then(|t| t.format().ok())
            .and_then(|t| {
                t.lines()
                    .rev()
                    .find(|l| l.trim_start().starts_with("File"))
                    .map(|l| format!(" ({})", l.trim()))
            })
            .unwrap_or_default();
        format!("{e}{tb}")
    });
    rgd_core::Error::component(format!("Python router `{type_name}`"), msg)
}

fn class(py: Python<'_>, type_name: &str) -> PyResult<Py<PyAny>> {
    classes()
        .get(type_name)
        .map(|r| r.class.clone_ref(py))
        .ok_or_else(|| {
            crate::err(format!(
                "no Python class is registered as `{type_name}` in this interpreter: call rgd.register_router(\"{type_name}\", cls) first"
            ))
        })
}

/// A split as the object a Python router reads: `types.SimpleNamespace` of [`split_dict`]'s
/// keys plus `models`.
fn namespace<'py>(
    py: Python<'py>,
    split: &Split,
    models: &[String],
) -> PyResult<Bound<'py, PyAny>> {
    let d = split_dict(py, split)?;
    d.set_item("models", models.to_vec())?;
    py.import("types")?
        .getattr("SimpleNamespace")?
        .call((), Some(&d))
}

/// The router of a registered class, configured by its table.
#[derive(Debug)]
struct PyRouter {
    type_name: String,
    config: serde_json::Value,
    supervision: Supervision,
}

impl Router for PyRouter {
    fn train(
        &self,
        train: &Split,
        models: &[String],
        ctx: &Context,
    ) -> rgd_core::Result<Box<dyn TrainedRouter>> {
        let trained = Python::attach(|py| -> PyResult<TrainedPy> {
            let cls = class(py, &self.type_name)?;
            let kwargs = py
                .import("json")?
                .call_method1("loads", (self.config.to_string(),))?;
            let instance = cls.call(py, (), Some(kwargs.downcast::<PyDict>()?))?;
            instance.call_method1(py, "train", (namespace(py, train, models)?,))?;
            let state = if instance.bind(py).hasattr("state")? {
                let s = instance.call_method0(py, "state")?;
                let text: String = py.import("json")?.call_method1("dumps", (s,))?.extract()?;
                serde_json::from_str(&text).map_err(crate::err)?
            } else {
                serde_json::Value::Null
            };
            Ok(TrainedPy {
                class: self.type_name.clone(),
                models: models.to_vec(),
                state,
                instance: OnceLock::from(instance),
            })
        })
        .map_err(|e| {
            // Ctrl-C while the class runs stops the whole run, not only this router
            if Python::attach(|py| e.is_instance_of::<pyo3::exceptions::PyKeyboardInterrupt>(py)) {
                ctx.interrupt
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                return rgd_core::Error::Interrupted;
            }
            failed(&self.type_name, e)
        })?;
        Ok(Box::new(trained))
    }

    fn supervision(&self) -> Supervision {
        self.supervision
    }
}

/// A trained Python router: its class's name, the pool and the state its `state()` returned.
#[derive(Debug, Serialize, Deserialize)]
struct TrainedPy {
    class: String,
    models: Vec<String>,
    state: serde_json::Value,
    #[serde(skip)]
    instance: OnceLock<Py<PyAny>>,
}

impl TrainedPy {
    /// The instance that trained, or one restored with `cls.from_state(state)`.
    fn instance(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        if let Some(i) = self.instance.get() {
            return Ok(i.clone_ref(py));
        }
        let cls = class(py, &self.class)?;
        if !cls.bind(py).hasattr("from_state")? {
            return Err(crate::err(format!(
                "the class registered as `{}` has no from_state(state) classmethod, so a saved artifact cannot be restored",
                self.class
            )));
        }
        let state = py
            .import("json")?
            .call_method1("loads", (self.state.to_string(),))?;
        let i = cls.call_method1(py, "from_state", (state,))?;
        Ok(self.instance.get_or_init(|| i).clone_ref(py))
    }
}

#[typetag::serde(name = "python")]
impl TrainedRouter for TrainedPy {
    fn models(&self) -> &[String] {
        &self.models
    }

    fn score(&self, query: &Query<'_>, out: &mut [f64]) -> rgd_core::Result<()> {
        let one = query.embedding.insert_axis(ndarray::Axis(0));
        let s = self.score_split(&query_split(one, self.models.len()))?;
        out.copy_from_slice(s.row(0).as_slice().unwrap_or(&s.row(0).to_vec()));
        Ok(())
    }

    fn score_split(&self, split: &Split) -> rgd_core::Result<ndarray::Array2<f64>> {
        let (n, m) = (split.len(), self.models.len());
        Python::attach(|py| -> PyResult<ndarray::Array2<f64>> {
            let instance = self.instance(py)?;
            let got = instance.call_method1(py, "score", (namespace(py, split, &self.models)?,))?;
            let arr = py
                .import("numpy")?
                .call_method1("asarray", (got, "float64"))?;
            let arr: PyReadonlyArray2<f64> = arr.extract().map_err(|_| {
                crate::err(format!("score() must return a [question, model] array of shape ({n}, {m})"))
            })?;
            let a = arr.as_array();
            if a.dim() != (n, m) {
                return Err(crate::err(format!(
                    "score() returned an array of shape {:?}; expected ({n}, {m}) ([question, model])",
                    a.dim()
                )));
            }
            if let Some(x) = a.iter().find(|x| !x.is_finite()) {
                return Err(crate::err(format!("score() returned {x}; scores must be finite")));
            }
            Ok(a.to_owned())
        })
        .map_err(|e| failed(&self.class, e))
    }

    fn validate(&self) -> rgd_core::Result<()> {
        rgd_core::artifact::models(&self.models)
    }
}
