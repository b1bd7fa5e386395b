//! The data model: questions, the pool's responses, embeddings, labels, splits and datasets.

use ndarray::{Array2, ArrayView1};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

use crate::{Error, Result};

/// Number of option letters rgd knows (A..T), as in the authors' code.
pub const N_LETTERS: usize = 20;

/// An option letter, `A` = 0 .. `T` = 19.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Letter(u8);

impl Letter {
    /// The letter with this 0-based index, if it is in A..T.
    pub fn from_index(i: usize) -> Option<Letter> {
        (i < N_LETTERS).then_some(Letter(i as u8))
    }
    /// Parse `"A"`, `"b"`, `"(C)"`, `" D."`: one letter A..T, optionally wrapped in
    /// parentheses or followed by punctuation; anything else is `None`.
    pub fn parse(s: &str) -> Option<Letter> {
        let t = s
            .trim()
            .trim_matches(|c: char| c == '(' || c == ')' || c == '.' || c == ':' || c == ',');
        let mut chars = t.chars();
        let c = chars.next()?;
        if chars.next().is_some() || !c.is_ascii_alphabetic() {
            return None;
        }
        Letter::from_index((c.to_ascii_uppercase() as u8 - b'A') as usize)
    }
    /// 0-based index (A = 0).
    pub fn index(self) -> usize {
        self.0 as usize
    }
    /// The letter as a char.
    pub fn as_char(self) -> char {
        (b'A' + self.0) as char
    }
}

impl fmt::Display for Letter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_char())
    }
}

impl TryFrom<String> for Letter {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        Letter::parse(&s).ok_or_else(|| format!("`{s}` is not an option letter A..T"))
    }
}

impl From<Letter> for String {
    fn from(l: Letter) -> String {
        l.to_string()
    }
}

/// A multiple-choice question.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Question {
    /// Unique id within its split.
    pub id: String,
    /// The subject (category) it belongs to.
    pub subject: String,
    /// The question text (what is embedded).
    pub text: String,
    /// The options, in letter order.
    pub options: Vec<String>,
    /// The answer key: the generator's key for generated data, the gold answer for real data.
    pub answer: Option<Letter>,
    /// Where the question came from (generator and prompt, benchmark, simulator), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// The pool's responses to the questions of one split: `[question, model]` matrices.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Responses {
    /// The chosen letter; `None` is an abstention (no parseable answer).
    pub choice: Array2<Option<Letter>>,
    /// The model's confidence: mean token log-probability of its response (or the
    /// log-probability of the chosen letter). `NaN` when unknown.
    pub confidence: Array2<f64>,
    /// Seconds each answer took, when measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<Array2<f64>>,
    /// Whether each answer was right, when the data records only that (a routing benchmark's
    /// 0/1 score matrix) instead of the chosen letters: it then decides correctness and
    /// `choice` is all abstentions. Routers that learn from the pool's letters (CASCAL) cannot
    /// run on such data; routers that learn from correctness can.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correct: Option<Array2<bool>>,
    /// What each answer cost (in the data's own unit, e.g. dollars), when recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<Array2<f64>>,
}

impl Responses {
    /// Responses given as letters and confidences only.
    pub fn letters(choice: Array2<Option<Letter>>, confidence: Array2<f64>) -> Self {
        Responses {
            choice,
            confidence,
            latency: None,
            correct: None,
            cost: None,
        }
    }
    /// Is model `m`'s answer to question `q` right: equal to `key`, or, when the data records
    /// correctness only, marked right there.
    pub fn is_correct(&self, q: usize, m: usize, key: Option<Letter>) -> bool {
        if let Some(c) = &self.correct {
            return c[[q, m]];
        }
        match (self.choice[[q, m]], key) {
            (Some(c), Some(k)) => c == k,
            _ => false,
        }
    }
    /// Whether the chosen letters are known (false for correctness-only data).
    pub fn has_letters(&self) -> bool {
        self.correct.is_none()
    }
}

/// One split (the generated training data, or the real test set).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Split {
    /// `train` or `test` (or another name).
    pub name: String,
    /// The questions.
    pub questions: Vec<Question>,
    /// The pool's responses, rows aligned with `questions`, columns with the dataset's models.
    pub responses: Responses,
    /// Question-text embeddings, one row per question.
    pub embeddings: Array2<f32>,
    /// The generator's own answer to each of its questions (it re-answers them as a pool
    /// member would), when known: what the `self_answer` filter and the diagnostics read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator_answer: Option<Vec<Option<Letter>>>,
    /// Pool calls that failed while answering (the model abstained): per model, how many and
    /// the first reason (an unanswerable prompt, a server down through its retries).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub call_failures: BTreeMap<String, (usize, String)>,
}

impl Split {
    /// Number of questions.
    pub fn len(&self) -> usize {
        self.questions.len()
    }
    /// Whether the split has no question.
    pub fn is_empty(&self) -> bool {
        self.questions.is_empty()
    }
    /// Its distinct subjects, sorted.
    pub fn subjects(&self) -> std::collections::BTreeSet<&str> {
        self.questions.iter().map(|q| q.subject.as_str()).collect()
    }
    /// Number of pool models.
    pub fn n_models(&self) -> usize {
        self.responses.choice.ncols()
    }
    /// Embedding of question `q`.
    pub fn embedding(&self, q: usize) -> ArrayView1<'_, f32> {
        self.embeddings.row(q)
    }
    /// The questions at `keep` (in that order), with their responses and embeddings.
    pub fn select(&self, keep: &[usize]) -> Split {
        let rows = |a: &Array2<Option<Letter>>| a.select(ndarray::Axis(0), keep);
        Split {
            name: self.name.clone(),
            questions: keep.iter().map(|&i| self.questions[i].clone()).collect(),
            responses: Responses {
                choice: rows(&self.responses.choice),
                confidence: self.responses.confidence.select(ndarray::Axis(0), keep),
                latency: self
                    .responses
                    .latency
                    .as_ref()
                    .map(|l| l.select(ndarray::Axis(0), keep)),
                correct: self
                    .responses
                    .correct
                    .as_ref()
                    .map(|c| c.select(ndarray::Axis(0), keep)),
                cost: self
                    .responses
                    .cost
                    .as_ref()
                    .map(|c| c.select(ndarray::Axis(0), keep)),
            },
            embeddings: self.embeddings.select(ndarray::Axis(0), keep),
            generator_answer: self
                .generator_answer
                .as_ref()
                .map(|g| keep.iter().map(|&i| g[i]).collect()),
            call_failures: self.call_failures.clone(),
        }
    }

    /// Question indices grouped by subject, subjects in order of first appearance.
    pub fn by_subject(&self) -> Vec<(String, Vec<usize>)> {
        let mut order: Vec<(String, Vec<usize>)> = Vec::new();
        let mut pos: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, q) in self.questions.iter().enumerate() {
            match pos.get(q.subject.as_str()) {
                Some(&p) => order[p].1.push(i),
                None => {
                    pos.insert(&q.subject, order.len());
                    order.push((q.subject.clone(), vec![i]));
                }
            }
        }
        order
    }

    /// Check shapes and values: matrices aligned with the questions and `n_models`,
    /// finite embeddings of one dimension, unique question ids.
    pub fn validate(&self, n_models: usize) -> Result<()> {
        let n = self.questions.len();
        let ctx = |m: String| Error::Data(format!("split `{}`: {m}", self.name));
        if self.responses.choice.dim() != (n, n_models)
            || self.responses.confidence.dim() != (n, n_models)
        {
            return Err(ctx(format!(
                "responses are {:?} but the split has {n} questions x {n_models} models",
                self.responses.choice.dim()
            )));
        }
        for (what, dim) in [
            ("latency", self.responses.latency.as_ref().map(|a| a.dim())),
            ("correct", self.responses.correct.as_ref().map(|a| a.dim())),
            ("cost", self.responses.cost.as_ref().map(|a| a.dim())),
        ] {
            if let Some(d) = dim.filter(|d| *d != (n, n_models)) {
                return Err(ctx(format!(
                    "{what} is {d:?} but the split has {n} questions x {n_models} models"
                )));
            }
        }
        if self.embeddings.nrows() != n {
            return Err(ctx(format!(
                "{} embedding rows for {n} questions",
                self.embeddings.nrows()
            )));
        }
        if n > 0 && self.embeddings.ncols() == 0 {
            return Err(ctx(
                "the embeddings have no dimension (0 values per question): the data gives none, so add an [embedder] table to the pipeline (or give the data an embedding column)".into(),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, q) in self.questions.iter().enumerate() {
            if !seen.insert(q.id.as_str()) {
                return Err(ctx(format!("duplicate question id `{}`", q.id)));
            }
            let n_opt = q.options.len();
            if n_opt > 0 {
                if let Some(a) = q.answer.filter(|a| a.index() >= n_opt) {
                    return Err(ctx(format!(
                        "question `{}`: answer `{}` but only {n_opt} options",
                        q.id,
                        a.as_char()
                    )));
                }
                for (m, c) in self.responses.choice.row(i).iter().enumerate() {
                    if let Some(c) = c.filter(|c| c.index() >= n_opt) {
                        return Err(ctx(format!(
                            "question `{}`: model {m} chose `{}` but there are only {n_opt} options",
                            q.id,
                            c.as_char()
                        )));
                    }
                }
            }
            if let Some(bad) = self.embeddings.row(i).iter().find(|v| !v.is_finite()) {
                return Err(ctx(format!(
                    "embedding of question `{}` has a non-finite value ({bad})",
                    q.id
                )));
            }
        }
        Ok(())
    }
}

/// A routing dataset: a pool of models, a training split and a test split.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dataset {
    /// A short name (the task).
    pub task: String,
    /// The pool's model names, in column order.
    pub models: Vec<String>,
    /// Training data (generated questions, or real labeled ones).
    pub train: Split,
    /// The real test set (answers are gold).
    pub test: Split,
}

impl Dataset {
    /// Validate both splits and that their embedding dimensions agree; the pool has at least
    /// one model and no name twice; the test split has questions and an answer key to score.
    pub fn validate(&self) -> Result<()> {
        if self.models.is_empty() {
            return Err(Error::Data("the pool has no model".into()));
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(m) = self.models.iter().find(|m| !seen.insert(m.as_str())) {
            return Err(Error::Data(format!("the pool names model `{m}` twice")));
        }
        self.train.validate(self.models.len())?;
        self.test.validate(self.models.len())?;
        if self.test.is_empty() {
            return Err(Error::Data(format!(
                "split `{}`: no test question, so nothing can be evaluated",
                self.test.name
            )));
        }
        if self.test.responses.has_letters()
            && self.test.questions.iter().all(|q| q.answer.is_none())
        {
            return Err(Error::Data(format!(
                "split `{}`: no test question has a gold answer, so no accuracy can be computed",
                self.test.name
            )));
        }
        let (a, b) = (self.train.embeddings.ncols(), self.test.embeddings.ncols());
        if !self.train.is_empty() && !self.test.is_empty() && a != b {
            return Err(Error::Data(format!(
                "train embeddings are {a}-d but test embeddings are {b}-d"
            )));
        }
        Ok(())
    }
}

impl Dataset {
    /// What is legal but suspicious, one line each: a model that never answers a split, a
    /// split on which no model is ever right, test questions without a gold answer.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for split in [&self.train, &self.test] {
            if split.is_empty() {
                continue;
            }
            for (m, name) in self.models.iter().enumerate() {
                if split.responses.has_letters()
                    && split.responses.choice.column(m).iter().all(|c| c.is_none())
                {
                    out.push(format!(
                        "model `{name}` answered none of the {} questions of split `{}`",
                        split.len(),
                        split.name
                    ));
                }
            }
            let keyed = if split.responses.has_letters() {
                split
                    .questions
                    .iter()
                    .filter(|q| q.answer.is_some())
                    .count()
            } else {
                split.len()
            };
            let right = (0..split.len())
                .filter(|&q| {
                    (0..self.models.len())
                        .any(|m| split.responses.is_correct(q, m, split.questions[q].answer))
                })
                .count();
            if keyed > 0 && right == 0 {
                out.push(format!(
                    "no model answers any of the {keyed} keyed questions of split `{}` right: check the answer letters",
                    split.name
                ));
            }
        }
        let unkeyed = self
            .test
            .questions
            .iter()
            .filter(|q| q.answer.is_none())
            .count();
        if !self.test.responses.has_letters() {
            out.push(
                "the data records only whether each answer was right, not the letter chosen: routers that learn from the pool's letters (cascal, dawid_skene) cannot run, and the top-3 vote (which needs letters) reads 0".into(),
            );
        } else if unkeyed > 0 {
            out.push(format!(
                "{unkeyed} of the {} test questions have no gold answer: they count as wrong for every router",
                self.test.len()
            ));
        }
        let (shared, unseen) = self.subject_overlap();
        if shared > 0 && !unseen.is_empty() {
            out.push(format!(
                "{} of the test split's {} subjects have no training question ({}): routers route them by the nearest training subject",
                unseen.len(),
                shared + unseen.len(),
                name_list(&unseen)
            ));
        }
        out
    }

    /// How many of the test split's subjects the training split has, and the test subjects it
    /// lacks (sorted).
    pub fn subject_overlap(&self) -> (usize, Vec<String>) {
        let train = self.train.subjects();
        let test = self.test.subjects();
        let unseen: Vec<String> = test
            .iter()
            .filter(|s| !train.contains(*s))
            .map(|s| s.to_string())
            .collect();
        (test.len() - unseen.len(), unseen)
    }
}

/// Up to five names in backticks, then how many more (for messages).
pub fn name_list(names: &[String]) -> String {
    let mut shown: Vec<String> = names.iter().take(5).map(|n| format!("`{n}`")).collect();
    if names.len() > 5 {
        shown.push(format!("{} more", names.len() - 5));
    }
    shown.join(", ")
}

/// Per-(question, model) labels a router learns from, what a [`crate::Labeler`] returns:
/// correctness against a key (0/1), or a soft score in [0, 1] such as CASCAL's consensus.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Labels {
    /// What the labels are (the labeler: `key`, `consensus`, `plurality`, `dawid_skene`, ...).
    pub kind: String,
    /// `[question, model]` values, higher = better.
    pub values: Array2<f64>,
}

/// Rank models by score, best first; exact ties go to the model listed first in the pool
/// (deterministic, unlike the authors' random tie-break).
pub fn rank(scores: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| {
        let (sa, sb) = (scores[a], scores[b]);
        sb.partial_cmp(&sa)
            .unwrap_or_else(|| sa.is_nan().cmp(&sb.is_nan()))
            .then(a.cmp(&b))
    });
    idx
}

/// Which part of each subject a question source draws from.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Part {
    /// Everything not held out.
    #[default]
    Main,
    /// The held-out share (e.g. a labeled validation set).
    Heldout,
}

/// Deterministic sampling of a question source: each subject's questions are shuffled with
/// the seed, the first `holdout` share forms part `heldout` and the rest part `main`, and
/// `per_subject` questions are taken from the chosen part, so a validation source
/// (`heldout`) and a test source (`main`) with the same seed and holdout never share a
/// question.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Sampling {
    /// Questions per subject (0: all of the part).
    pub per_subject: usize,
    /// Share of each subject held out as part `heldout`, in [0, 1).
    pub holdout: f64,
    /// Which part to draw from.
    pub part: Part,
    /// The seed.
    pub seed: u64,
}

impl Sampling {
    /// `holdout` is in [0, 1).
    pub fn check(&self) -> std::result::Result<(), String> {
        if (0.0..1.0).contains(&self.holdout) {
            Ok(())
        } else {
            Err(format!("holdout must be in [0, 1), got {}", self.holdout))
        }
    }

    /// The sample of one subject's questions.
    pub fn subject(&self, subject: &str, mut qs: Vec<Question>) -> Vec<Question> {
        use rand::SeedableRng;
        use rand::seq::SliceRandom;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(self.seed ^ fnv(subject));
        qs.shuffle(&mut rng);
        let k = (self.holdout * qs.len() as f64).round() as usize;
        let mut part: Vec<Question> = match self.part {
            Part::Heldout => qs.drain(..k).collect(),
            Part::Main => qs.split_off(k),
        };
        if self.per_subject > 0 {
            part.truncate(self.per_subject);
        }
        part
    }

    /// The sample of every subject, subjects in name order.
    pub fn apply(&self, qs: Vec<Question>) -> std::result::Result<Vec<Question>, String> {
        self.check()?;
        let mut by: BTreeMap<String, Vec<Question>> = BTreeMap::new();
        for q in qs {
            by.entry(q.subject.clone()).or_default().push(q);
        }
        Ok(by
            .into_iter()
            .flat_map(|(s, qs)| self.subject(&s, qs))
            .collect())
    }
}

/// FNV-1a of a string: a stable per-subject seed offset.
pub fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}
