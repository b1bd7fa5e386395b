//! One file's questions and answers as matrices before the train/test split ([`Collected`]),
//! how a row's answer cells fill them, the split by subject, and embeddings tables: what the
//! `responses` and `lm_eval` sources share.

use ndarray::Array2;
use rgd_core::{Letter, Question, Responses, Split};
use std::collections::HashMap;
use std::path::Path;

use crate::questions::{AnswerFormat, resolve_answer};
use crate::table::{Cell, Format, Table};
use crate::{FileError, Skipped};

/// One file's questions and answers, before the split.
pub(crate) struct Collected {
    pub(crate) models: Vec<String>,
    pub(crate) questions: Vec<Question>,
    pub(crate) embeddings: Vec<Option<Vec<f32>>>,
    pub(crate) choice: Array2<Option<Letter>>,
    pub(crate) confidence: Array2<f64>,
    pub(crate) correct: Option<Array2<bool>>,
    pub(crate) cost: Option<Array2<f64>>,
    pub(crate) latency: Option<Array2<f64>>,
}

/// The answer columns of a table: per model (wide) or one each (long).
pub(crate) struct AnswerColumns<'t> {
    pub(crate) choice: Option<Vec<&'t [Cell]>>,
    pub(crate) correct: Option<Vec<&'t [Cell]>>,
    pub(crate) confidence: Option<Vec<&'t [Cell]>>,
    pub(crate) cost: Option<Vec<&'t [Cell]>>,
    pub(crate) latency: Option<Vec<&'t [Cell]>>,
}

impl Collected {
    pub(crate) fn new(models: Vec<String>, cols: &AnswerColumns<'_>, n: usize) -> Self {
        let k = models.len();
        let nan = || Array2::from_elem((n, k), f64::NAN);
        Collected {
            models,
            questions: Vec::with_capacity(n),
            embeddings: Vec::with_capacity(n),
            choice: Array2::from_elem((n, k), None),
            confidence: nan(),
            // letters decide when the file has them; else the 0/1 column does
            correct: (cols.choice.is_none()).then(|| Array2::from_elem((n, k), false)),
            cost: cols.cost.as_ref().map(|_| nan()),
            latency: cols.latency.as_ref().map(|_| nan()),
        }
    }

    /// The same answers with the models in `order` (a permutation of `self.models`), or `None`
    /// when `order` names other models.
    pub(crate) fn in_model_order(mut self, order: &[String]) -> Option<Self> {
        if order.len() != self.models.len() {
            return None;
        }
        let idx: Vec<usize> = order
            .iter()
            .map(|m| self.models.iter().position(|x| x == m))
            .collect::<Option<_>>()?;
        let cols = ndarray::Axis(1);
        self.choice = self.choice.select(cols, &idx);
        self.confidence = self.confidence.select(cols, &idx);
        self.correct = self.correct.map(|a| a.select(cols, &idx));
        self.cost = self.cost.map(|a| a.select(cols, &idx));
        self.latency = self.latency.map(|a| a.select(cols, &idx));
        self.models = order.to_vec();
        Some(self)
    }

    /// Fill answer `(q, m)` from row `i` (`which`: the model's column index in `cols`, 0 for
    /// long tables, ignored when `cols` hold one column each).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn put<'t>(
        &mut self,
        q: usize,
        m: usize,
        cols: &AnswerColumns<'t>,
        i: usize,
        question: &Question,
        format: AnswerFormat,
        t: &Table,
        bad: &mut Skipped,
    ) {
        let pick = |v: &Option<Vec<&'t [Cell]>>| -> Option<&'t Cell> {
            v.as_ref().map(|c| &c[if c.len() == 1 { 0 } else { m }][i])
        };
        let model = &self.models[m];
        if let Some(cell) = pick(&cols.choice).filter(|c| !c.is_null()) {
            match resolve_answer(cell, &question.options, None, format) {
                Ok(l) => self.choice[[q, m]] = Some(l),
                Err(e) => bad.add(t.at(i), format!("model `{model}`: a choice {e}")),
            }
        }
        if let (Some(c), Some(cell)) = (self.correct.as_mut(), pick(&cols.correct)) {
            // 0/1, a boolean, or its text (`true`, `True`: pandas writes booleans so)
            let truth = cell.number().or_else(|| {
                cell.text()
                    .and_then(|t| match t.trim().to_ascii_lowercase().as_str() {
                        "true" => Some(1.0),
                        "false" => Some(0.0),
                        _ => None,
                    })
            });
            match truth {
                Some(x) if x == 0.0 || x == 1.0 => c[[q, m]] = x == 1.0,
                None if cell.is_null() => bad.add(t.at(i), format!("model `{model}`: no score")),
                _ => bad.add(
                    t.at(i),
                    format!("model `{model}`: a score that is not 0 or 1"),
                ),
            }
        }
        // a present cell must be a number of its kind; anything else is counted and left
        // unknown, never read as a value
        let read = |cell: Option<&Cell>, ok: fn(f64) -> bool| -> Result<Option<f64>, String> {
            match cell {
                None => Ok(None),
                Some(c) if c.is_null() => Ok(None),
                Some(c) => match c.number() {
                    Some(x) if ok(x) => Ok(Some(x)),
                    _ => Err(c.text().unwrap_or_else(|| "(a list)".into()).into_owned()),
                },
            }
        };
        match read(pick(&cols.confidence), |x| x.is_finite() && x <= 0.0) {
            Ok(Some(x)) => self.confidence[[q, m]] = x,
            Ok(None) => {}
            Err(v) => bad.add(
                t.at(i),
                format!(
                    "model `{model}`: a confidence `{v}` that is not a log-probability (a finite number <= 0)"
                ),
            ),
        }
        let non_negative = |x: f64| x.is_finite() && x >= 0.0;
        if let Some(cost) = self.cost.as_mut() {
            match read(pick(&cols.cost), non_negative) {
                Ok(Some(x)) => cost[[q, m]] = x,
                Ok(None) => {}
                Err(v) => bad.add(
                    t.at(i),
                    format!("model `{model}`: a cost `{v}` that is not a finite number >= 0"),
                ),
            }
        }
        if let Some(latency) = self.latency.as_mut() {
            match read(pick(&cols.latency), non_negative) {
                Ok(Some(x)) => latency[[q, m]] = x,
                Ok(None) => {}
                Err(v) => bad.add(
                    t.at(i),
                    format!("model `{model}`: a latency `{v}` that is not a finite number of seconds >= 0"),
                ),
            }
        }
    }

    pub(crate) fn select(&self, keep: &[usize]) -> Collected {
        let rows = |a: &Array2<f64>| a.select(ndarray::Axis(0), keep);
        Collected {
            models: self.models.clone(),
            questions: keep.iter().map(|&i| self.questions[i].clone()).collect(),
            embeddings: keep.iter().map(|&i| self.embeddings[i].clone()).collect(),
            choice: self.choice.select(ndarray::Axis(0), keep),
            confidence: rows(&self.confidence),
            correct: self
                .correct
                .as_ref()
                .map(|c| c.select(ndarray::Axis(0), keep)),
            cost: self.cost.as_ref().map(rows),
            latency: self.latency.as_ref().map(rows),
        }
    }

    /// These questions split per subject into a training and a test split (`share` of each
    /// subject tested, seeded), as the dataset of `task`.
    pub(crate) fn into_dataset(
        self,
        task: &str,
        share: f64,
        seed: u64,
        base: &Path,
    ) -> Result<rgd_core::Dataset, FileError> {
        let (tr, te) = split_by_subject(&self.questions, share, seed);
        Ok(rgd_core::Dataset {
            task: task.to_string(),
            models: self.models.clone(),
            train: self.select(&tr).into_split("train", base, None)?,
            test: self.select(&te).into_split("test", base, None)?,
        })
    }

    pub(crate) fn into_split(
        self,
        name: &str,
        path: &Path,
        external: Option<&HashMap<String, Vec<f32>>>,
    ) -> Result<Split, FileError> {
        let n = self.questions.len();
        let mut vectors: Vec<Option<Vec<f32>>> = self.embeddings;
        if let Some(ext) = external {
            vectors = self
                .questions
                .iter()
                .map(|q| ext.get(&q.id).cloned())
                .collect();
        }
        let have = vectors.iter().filter(|v| v.is_some()).count();
        let embeddings = if have == 0 {
            // none given: the pipeline's [embedder] fills them in
            Array2::zeros((n, 0))
        } else {
            let dim = vectors.iter().flatten().next().map(Vec::len).unwrap_or(0);
            let mut e = Array2::zeros((n, dim));
            for (q, v) in vectors.iter().enumerate() {
                let v = v.as_ref().ok_or_else(|| {
                    FileError::invalid(
                        path,
                        format!(
                            "question `{}` has no embedding (others do)",
                            self.questions[q].id
                        ),
                    )
                })?;
                if v.len() != dim {
                    return Err(FileError::invalid(
                        path,
                        format!(
                            "question `{}`: a {}-d embedding, but the first is {dim}-d",
                            self.questions[q].id,
                            v.len()
                        ),
                    ));
                }
                e.row_mut(q)
                    .assign(&ndarray::ArrayView1::from(v.as_slice()));
            }
            e
        };
        Ok(Split {
            name: name.into(),
            questions: self.questions,
            responses: Responses {
                choice: self.choice,
                confidence: self.confidence,
                latency: self.latency,
                correct: self.correct,
                cost: self.cost,
            },
            embeddings,
            generator_answer: None,
            call_failures: Default::default(),
        })
    }
}

/// Split question indices per subject: the first `share` of each subject's questions,
/// shuffled with `seed`, go to test.
pub(crate) fn split_by_subject(
    questions: &[Question],
    share: f64,
    seed: u64,
) -> (Vec<usize>, Vec<usize>) {
    use rand::SeedableRng;
    use rand::seq::SliceRandom;
    let mut by: std::collections::BTreeMap<&str, Vec<usize>> = Default::default();
    for (i, q) in questions.iter().enumerate() {
        by.entry(&q.subject).or_default().push(i);
    }
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for (s, mut idx) in by {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ rgd_core::data::fnv(s));
        idx.shuffle(&mut rng);
        let k = ((share * idx.len() as f64).round() as usize).min(idx.len());
        test.extend_from_slice(&idx[..k]);
        train.extend_from_slice(&idx[k..]);
    }
    train.sort_unstable();
    test.sort_unstable();
    (train, test)
}

/// An embeddings table: id -> vector.
pub(crate) fn read_embeddings(
    path: &Path,
    format: Option<Format>,
    id: &str,
    column: &str,
) -> Result<HashMap<String, Vec<f32>>, FileError> {
    let t = Table::read(path, format)?;
    let ids = t.column(id)?;
    let vs = t.column(column)?;
    let mut out = HashMap::with_capacity(t.n_rows);
    let mut first: HashMap<String, usize> = HashMap::new();
    for i in 0..t.n_rows {
        let key = ids[i].text().ok_or_else(|| FileError::Parse {
            path: path.to_path_buf(),
            at: t.at(i),
            msg: format!("no `{id}`"),
        })?;
        let v = vs[i].number_list().ok_or_else(|| FileError::Parse {
            path: path.to_path_buf(),
            at: t.at(i),
            msg: format!("`{column}` is not a list of numbers"),
        })?;
        if let Some(bad) = v.iter().find(|x| !x.is_finite()) {
            return Err(FileError::Parse {
                path: path.to_path_buf(),
                at: t.at(i),
                msg: format!("a non-finite value ({bad}) in `{column}`"),
            });
        }
        if let Some(&f) = first.get(key.as_ref()) {
            return Err(FileError::Duplicate {
                path: path.to_path_buf(),
                id: key.into_owned(),
                first: t.at(f),
                second: t.at(i),
            });
        }
        first.insert(key.to_string(), i);
        out.insert(key.into_owned(), v.into_owned());
    }
    Ok(out)
}
