//! `rgd` for Python: the experiment library (`rgd-experiment`) behind a thin PyO3 layer. The
//! Python package `rgd` (python/rgd/__init__.py) wraps these functions with data frames,
//! progress and pipeline arguments given as a path, a TOML string or a dict.

mod arrays;
mod pyclass;
mod pylabeler;
mod pyrouter;

use numpy::{IntoPyArray, PyArray2, PyReadonlyArray2};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use rgd_core::{Embedder, Registry, TrainedRouter};
use rgd_experiment::{CacheOptions, Resolved, Session};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

create_exception!(
    _rgd,
    RgdError,
    PyException,
    "An rgd error: the message names the file, table, field or component."
);

/// An rgd error as the Python exception `rgd.RgdError` (its message is the whole chain).
fn err(e: impl std::fmt::Display) -> PyErr {
    RgdError::new_err(e.to_string())
}

/// The built-in registry plus every router and labeler registered from Python.
fn registry() -> PyResult<Registry> {
    let mut r = rgd_components::registry().map_err(err)?;
    pyrouter::add_to(&mut r).map_err(err)?;
    pylabeler::add_to(&mut r).map_err(err)?;
    Ok(r)
}

/// A pipeline given as `path` (a file), `toml` (its text) or `json` (a dict as JSON text);
/// relative paths in text resolve against `base_dir`.
fn resolve(registry: &Registry, kind: &str, value: &str, base_dir: &Path) -> PyResult<Resolved> {
    match kind {
        "path" => Resolved::from_file(registry, Path::new(value), true).map_err(err),
        "toml" => Resolved::from_toml(registry, value, base_dir, true).map_err(err),
        "json" => {
            let v: serde_json::Value = serde_json::from_str(value).map_err(err)?;
            let t = to_toml(v).map_err(|e| err(format!("the pipeline dict: {e}")))?;
            let text = toml::to_string(&t).map_err(err)?;
            Resolved::from_toml(registry, &text, base_dir, true).map_err(err)
        }
        other => Err(err(format!("unknown pipeline kind `{other}`"))),
    }
}

/// A pipeline dict (sent as JSON where each table is `{"__rgd_table__": [[key, value], ...]}`,
/// keeping its order) as a TOML value.
fn to_toml(v: serde_json::Value) -> Result<toml::Value, String> {
    use serde_json::Value as J;
    Ok(match v {
        J::Null => return Err("None has no TOML form; leave the key out".into()),
        J::Bool(b) => toml::Value::Boolean(b),
        J::Number(n) => match n.as_i64() {
            Some(i) => toml::Value::Integer(i),
            None => toml::Value::Float(
                n.as_f64()
                    .ok_or(format!("{n} is not a number TOML holds"))?,
            ),
        },
        J::String(s) => toml::Value::String(s),
        J::Array(a) => toml::Value::Array(a.into_iter().map(to_toml).collect::<Result<_, _>>()?),
        J::Object(mut o) => {
            let Some(J::Array(pairs)) = o.remove("__rgd_table__") else {
                return Err("a table must come from a dict".into());
            };
            let mut t = toml::Table::new();
            for p in pairs {
                let J::Array(mut kv) = p else {
                    return Err("a table entry must be a [key, value] pair".into());
                };
                let (Some(v), Some(J::String(k))) = (kv.pop(), kv.pop()) else {
                    return Err("a table entry must be a [key, value] pair".into());
                };
                t.insert(k, to_toml(v)?);
            }
            toml::Value::Table(t)
        }
    })
}

/// Progress for Python: each event goes to a Python callable `(event, text)`; a bar object
/// (`update(label, done, total)`, `close()`) follows the long steps (model calls, the routers
/// trained and tested). Ctrl-C (a pending KeyboardInterrupt) stops the run at its next step,
/// every finished call cached.
struct PyProgress {
    callback: Option<Py<PyAny>>,
    bar: Option<Py<PyAny>>,
    interrupted: Arc<AtomicBool>,
}

impl PyProgress {
    fn send(&self, event: &str, text: &str) {
        Python::attach(|py| {
            if py.check_signals().is_err() {
                self.interrupted.store(true, Ordering::SeqCst);
            }
            if let Some(cb) = &self.callback
                && let Err(e) = cb.call1(py, (event, text))
            {
                // a broken callback must not stop the run
                e.print(py);
            }
        });
    }

    /// `bar.update(label, done, total)`, or `bar.close()` without a label.
    fn bar(&self, update: Option<(&str, usize, usize)>) {
        if let Some(bar) = &self.bar {
            Python::attach(|py| {
                let called = match update {
                    Some(args) => bar.call_method1(py, "update", args),
                    None => bar.call_method0(py, "close"),
                };
                if let Err(e) = called {
                    e.print(py);
                }
            });
        }
    }
}

impl rgd_experiment::Progress for PyProgress {
    fn start(&self, stage: &str) {
        self.send("start", stage);
    }
    fn done(&self, stage: &str, seconds: f64, note: &str) {
        let sep = if note.is_empty() { "" } else { ": " };
        self.send("done", &format!("{stage} ({seconds:.2}s){sep}{note}"));
    }
    fn items(&self, label: &str, done: usize, total: usize) {
        self.bar(Some((label, done, total)));
        self.send("items", &format!("{label} {done}/{total}"));
    }
    fn items_done(&self) {
        self.bar(None);
    }
    fn info(&self, line: &str) {
        self.send("info", line);
    }
    fn warn(&self, line: &str) {
        self.send("warning", line);
    }
}

/// Run a pipeline; returns `(results.json text, report.md text)`. With `out`, writes what
/// `rgd run` writes there.
#[pyfunction]
#[pyo3(signature = (kind, value, base_dir, out=None, progress=None, bar=None, cache=None, live=false))]
#[allow(clippy::too_many_arguments)]
fn run(
    py: Python<'_>,
    kind: &str,
    value: &str,
    base_dir: PathBuf,
    out: Option<PathBuf>,
    progress: Option<Py<PyAny>>,
    bar: Option<Py<PyAny>>,
    cache: Option<PathBuf>,
    live: bool,
) -> PyResult<(String, String)> {
    let registry = registry()?;
    let resolved = resolve(&registry, kind, value, &base_dir)?;
    // Ctrl-C sets the run's interrupt flag (checked between batches of model calls and
    // between routers); progress events are where Python's signals are looked at, so the
    // session is never quiet: without a callback they only check for Ctrl-C
    let interrupted = resolved.ctx.interrupt.clone();
    let quiet = false;
    let session = Session::new(
        CacheOptions {
            cache,
            mode: None,
            live,
        },
        Arc::new(PyProgress {
            callback: progress,
            bar,
            interrupted: interrupted.clone(),
        }),
        quiet,
    );
    let result = py.detach(|| -> Result<(String, String), String> {
        let r =
            rgd_experiment::run(&resolved, &session, out.as_deref()).map_err(|e| e.to_string())?;
        if let Some(o) = &out {
            rgd_report::write_run(o, &r).map_err(|e| e.to_string())?;
        }
        let json = serde_json::to_string(&r).map_err(|e| e.to_string())?;
        Ok((json, rgd_report::report(&r, &r.order)))
    });
    if interrupted.load(Ordering::SeqCst) {
        return Err(pyo3::exceptions::PyKeyboardInterrupt::new_err(
            "the run was interrupted; every model call it finished is in the cache (a rerun makes only the rest)",
        ));
    }
    result.map_err(err)
}

/// What `Router.route` returns: `(model, score)` best first, and the router's explanation.
type RouteReply = (Vec<(String, f64)>, Option<String>);

/// A trained router loaded from its artifact (and its embedder, when saved beside it).
#[pyclass(module = "rgd._rgd", name = "Router")]
struct Router {
    trained: Box<dyn TrainedRouter>,
    embedder: Option<Box<dyn Embedder>>,
    path: PathBuf,
}

impl Router {
    /// The router's batched scores of `embeddings`, computed with the GIL released.
    fn score_array(
        &self,
        py: Python<'_>,
        embeddings: PyReadonlyArray2<'_, f32>,
    ) -> PyResult<ndarray::Array2<f64>> {
        let view = embeddings.as_array();
        let trained = self.trained.as_ref();
        py.detach(|| arrays::score_embeddings(trained, view))
            .map_err(err)
    }
}

#[pymethods]
impl Router {
    /// The pool models, in score column order.
    #[getter]
    fn models(&self) -> Vec<String> {
        self.trained.models().to_vec()
    }

    /// The `[query, model]` scores of a batch of query embeddings (float32, one row each).
    fn scores<'py>(
        &self,
        py: Python<'py>,
        embeddings: PyReadonlyArray2<'py, f32>,
    ) -> PyResult<Bound<'py, PyArray2<f64>>> {
        Ok(self.score_array(py, embeddings)?.into_pyarray(py))
    }

    /// Model indices best first for each query embedding (int64, `[query, rank]`).
    fn rank<'py>(
        &self,
        py: Python<'py>,
        embeddings: PyReadonlyArray2<'py, f32>,
    ) -> PyResult<Bound<'py, PyArray2<i64>>> {
        let s = self.score_array(py, embeddings)?;
        let mut out = ndarray::Array2::<i64>::zeros(s.dim());
        for (i, row) in s.rows().into_iter().enumerate() {
            let r = rgd_core::rank(row.as_slice().unwrap_or(&row.to_vec()));
            for (k, m) in r.into_iter().enumerate() {
                out[[i, k]] = m as i64;
            }
        }
        Ok(out.into_pyarray(py))
    }

    /// Rank the pool for one query text (embedded with the artifact's embedder): a list of
    /// `(model, score)` best first, and the router's explanation.
    fn route(&self, py: Python<'_>, text: &str) -> PyResult<RouteReply> {
        let embedder = self.embedder.as_deref().ok_or_else(|| {
            err(format!(
                "{}: no embedder.toml beside the artifact (a pipeline with [data] saves none); use .scores(embeddings)",
                self.path.display()
            ))
        })?;
        let trained = self.trained.as_ref();
        let r = py
            .detach(|| rgd_experiment::artifact::route(trained, Some(embedder), text, None))
            .map_err(err)?;
        Ok((r.ranked, r.why))
    }

    /// Seconds the Rust call alone takes (the router's batched scoring of a split built from
    /// `embeddings`, median of `repeats`): the baseline the Python call is measured against.
    #[pyo3(signature = (embeddings, repeats=5))]
    fn _rust_seconds(
        &self,
        py: Python<'_>,
        embeddings: PyReadonlyArray2<'_, f32>,
        repeats: usize,
    ) -> PyResult<f64> {
        let split = arrays::query_split(embeddings.as_array(), self.trained.models().len());
        let trained = self.trained.as_ref();
        py.detach(|| {
            let mut t = Vec::new();
            for _ in 0..repeats.max(1) {
                let t0 = std::time::Instant::now();
                trained.score_split(&split)?;
                t.push(t0.elapsed().as_secs_f64());
            }
            t.sort_by(f64::total_cmp);
            Ok(t[t.len() / 2])
        })
        .map_err(|e: rgd_core::Error| err(e))
    }

    fn __repr__(&self) -> String {
        format!(
            "Router({}, models={:?})",
            self.path.display(),
            self.trained.models()
        )
    }
}

/// Load a trained router artifact (`OUT/routers/NAME.json`); `precision` replaces its MiniLM
/// embedder's (`"f32"` or `"int8"`).
#[pyfunction]
#[pyo3(signature = (path, precision=None))]
fn load_router(path: PathBuf, precision: Option<String>) -> PyResult<Router> {
    let registry = registry()?;
    let embedder_file = path.with_file_name("embedder.toml");
    // a precision is the saved embedder's: without one, the library says it has none
    let (trained, embedder) = if embedder_file.exists() || precision.is_some() {
        let (t, e) =
            rgd_experiment::artifact::load_with_embedder(&registry, &path, precision.as_deref())
                .map_err(err)?;
        (t, Some(e))
    } else {
        (
            rgd_experiment::artifact::load_router(&path).map_err(err)?,
            None,
        )
    };
    Ok(Router {
        trained,
        embedder,
        path,
    })
}

/// Load a pipeline's data (through the call cache, as a run does): `{task, models, train,
/// test}` with each split's arrays.
#[pyfunction]
#[pyo3(signature = (kind, value, base_dir, cache=None))]
fn load_dataset<'py>(
    py: Python<'py>,
    kind: &str,
    value: &str,
    base_dir: PathBuf,
    cache: Option<PathBuf>,
) -> PyResult<Bound<'py, pyo3::types::PyDict>> {
    let registry = registry()?;
    let resolved = resolve(&registry, kind, value, &base_dir)?;
    let session = Session::new(
        CacheOptions {
            cache,
            ..CacheOptions::default()
        },
        Arc::new(rgd_experiment::Silent),
        true,
    );
    let (ds, _, _) = py
        .detach(|| rgd_experiment::run::load_data(&resolved, &session))
        .map_err(err)?;
    let d = pyo3::types::PyDict::new(py);
    d.set_item("task", &ds.task)?;
    d.set_item("models", &ds.models)?;
    d.set_item("train", arrays::split_dict(py, &ds.train)?)?;
    d.set_item("test", arrays::split_dict(py, &ds.test)?)?;
    Ok(d)
}

/// Every framework table and registered component type with its fields, as JSON text.
#[pyfunction]
fn components() -> PyResult<String> {
    let registry = registry()?;
    let mut v = serde_json::Map::new();
    for kind in rgd_core::Kind::ALL {
        let list: Vec<serde_json::Value> = registry
            .entries(kind)
            .map(|e| serde_json::json!({"type": e.type_name, "doc": e.doc, "fields": e.fields}))
            .collect();
        v.insert(kind.to_string(), list.into());
    }
    v.insert(
        "pipeline tables".into(),
        serde_json::to_value(rgd_experiment::tables::framework_tables()).map_err(err)?,
    );
    serde_json::to_string(&v).map_err(err)
}

/// The native part of the `rgd` package.
#[pymodule]
fn _rgd(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("RgdError", m.py().get_type::<RgdError>())?;
    m.add_function(wrap_pyfunction!(run, m)?)?;
    m.add_function(wrap_pyfunction!(load_router, m)?)?;
    m.add_function(wrap_pyfunction!(load_dataset, m)?)?;
    m.add_function(wrap_pyfunction!(components, m)?)?;
    m.add_function(wrap_pyfunction!(pyrouter::register_router, m)?)?;
    m.add_function(wrap_pyfunction!(pylabeler::register_labeler, m)?)?;
    m.add_class::<Router>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
