//! Arrays between rgd and numpy: a batch of query embeddings scored, and a split's data as
//! numpy arrays.

use ndarray::{Array2, ArrayView2};
use numpy::IntoPyArray;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use rgd_core::{Question, Responses, Split, TrainedRouter};

/// A split holding only query embeddings (no text, no answers): what a router scores.
pub fn query_split(embeddings: ArrayView2<'_, f32>, n_models: usize) -> Split {
    let n = embeddings.nrows();
    Split {
        name: "queries".into(),
        questions: (0..n)
            .map(|i| Question {
                id: format!("q{i}"),
                subject: String::new(),
                text: String::new(),
                options: Vec::new(),
                answer: None,
                source: None,
            })
            .collect(),
        responses: Responses {
            choice: Array2::from_elem((n, n_models), None),
            confidence: Array2::from_elem((n, n_models), f64::NAN),
            latency: None,
            correct: None,
            cost: None,
        },
        // the one copy: a split owns its embeddings; the router's batched path reads them
        embeddings: embeddings.to_owned(),
        generator_answer: None,
        call_failures: Default::default(),
    }
}

/// Score a batch of query embeddings with the router's batched path.
pub fn score_embeddings(
    trained: &dyn TrainedRouter,
    embeddings: ArrayView2<'_, f32>,
) -> rgd_core::Result<Array2<f64>> {
    trained.score_split(&query_split(embeddings, trained.models().len()))
}

/// A split as a dict of lists and numpy arrays: `ids`, `subjects`, `questions`, `options`,
/// `answer` (int64, -1 without a key), `choice` (int64 `[question, model]`, -1 abstained),
/// `correct` (bool), `confidence` (float64), `latency` (float64 or None), `embeddings`
/// (float32).
pub fn split_dict<'py>(py: Python<'py>, s: &Split) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let (n, m) = s.responses.choice.dim();
    d.set_item("name", &s.name)?;
    let column = |f: fn(&Question) -> String| s.questions.iter().map(f).collect::<Vec<_>>();
    d.set_item("ids", column(|q| q.id.clone()))?;
    d.set_item("subjects", column(|q| q.subject.clone()))?;
    d.set_item("questions", column(|q| q.text.clone()))?;
    let options: Vec<Vec<String>> = s.questions.iter().map(|q| q.options.clone()).collect();
    d.set_item("options", options)?;
    let answer: Vec<i64> = s
        .questions
        .iter()
        .map(|q| q.answer.map_or(-1, |l| l.index() as i64))
        .collect();
    d.set_item("answer", ndarray::Array1::from(answer).into_pyarray(py))?;
    let choice = s
        .responses
        .choice
        .map(|c| c.map_or(-1, |l| l.index() as i64));
    d.set_item("choice", choice.into_pyarray(py))?;
    let correct = Array2::from_shape_fn((n, m), |(q, j)| {
        s.responses.is_correct(q, j, s.questions[q].answer)
    });
    d.set_item("correct", correct.into_pyarray(py))?;
    d.set_item(
        "confidence",
        s.responses.confidence.clone().into_pyarray(py),
    )?;
    match &s.responses.latency {
        Some(l) => d.set_item("latency", l.clone().into_pyarray(py))?,
        None => d.set_item("latency", py.None())?,
    }
    d.set_item("embeddings", s.embeddings.clone().into_pyarray(py))?;
    Ok(d)
}
