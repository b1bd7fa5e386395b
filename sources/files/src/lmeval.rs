//! lm-evaluation-harness `--log_samples` output as a data source (`lm_eval`): one folder (or
//! file) per model; each `samples_<task>_<timestamp>.jsonl` line is one multiple-choice
//! document with its per-option log-likelihoods (`filtered_resps`). Followed: the harness's
//! 0.4 sample format (checked on files written by lm-eval 0.4.13): `doc_id`, `doc`, `target`
//! (the gold index, as a number or text), `arguments` (`{"gen_args_i": {"arg_0": context,
//! "arg_1": continuation}}`, or the older list of `[context, continuation]` pairs),
//! `filtered_resps` (`[log-likelihood, is_greedy]` per option, numbers or their text).
//!
//! The chosen option is the one with the highest log-likelihood (the harness's `acc`, not the
//! length-normalised `acc_norm`); the confidence is its log-probability among the options
//! (log-likelihood minus the log-sum-exp over options). A question's id is `<task>:<doc_id>`,
//! its subject the task, its text the document's `question` when that is text, else the
//! prompt the model saw.

use indexmap::IndexMap;
use ndarray::Array2;
use rgd_core::{Context, DataSource, Dataset, Question};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::collected::Collected;
use crate::questions::{AnswerFormat, resolve_answer};
use crate::table::Cell;
use crate::{FileError, Skipped};

/// lm-evaluation-harness sample logs of several models, read as a routing dataset.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LmEval {
    /// Model name -> its output folder (searched for `samples_*.jsonl`) or one samples file.
    pub models: IndexMap<String, PathBuf>,
    /// The tasks to use (default: every task the first model has).
    #[serde(default)]
    pub tasks: Vec<String>,
    /// The share of each task's documents that forms the test split.
    #[serde(default = "half")]
    pub test_share: f64,
    /// Seed of the train/test split.
    #[serde(default)]
    pub seed: u64,
    /// The task's name in reports.
    #[serde(default = "default_task")]
    pub task: String,
    /// How a sample's `target` names the right option: `auto` (an index or the option's
    /// text; a target that could be either, naming different options, is skipped and
    /// counted), `index` (lm-eval's usual, a 0-based index) or `text`.
    #[serde(default)]
    pub target_format: AnswerFormat,
}

fn half() -> f64 {
    0.5
}
fn default_task() -> String {
    "lm_eval".into()
}

#[derive(Deserialize)]
struct Sample {
    doc_id: serde_json::Value,
    #[serde(default)]
    doc: serde_json::Value,
    target: serde_json::Value,
    arguments: serde_json::Value,
    filtered_resps: Vec<serde_json::Value>,
}

/// One document as one model answered it.
struct Answered {
    question: Question,
    loglik: Vec<f64>,
}

/// The task a samples file is of: `samples_<task>_<timestamp>.jsonl`.
pub fn task_of(file: &Path) -> Option<String> {
    let name = file.file_name()?.to_str()?;
    let stem = name.strip_prefix("samples_")?.strip_suffix(".jsonl")?;
    // the timestamp starts at the last `_` followed by a year
    let cut = stem.match_indices('_').map(|(i, _)| i).rfind(|&i| {
        let rest = &stem[i + 1..];
        rest.len() > 5 && rest[..4].bytes().all(|b| b.is_ascii_digit()) && &rest[4..5] == "-"
    })?;
    Some(stem[..cut].to_string())
}

/// Every samples file under `path` (or `path` itself), by task.
fn sample_files(path: &Path) -> Result<IndexMap<String, PathBuf>, FileError> {
    let mut files = Vec::new();
    if path.is_file() {
        files.push(path.to_path_buf());
    } else {
        // walkdir follows directory links and reports a link back to a folder it is inside
        // instead of entering it: such a loop (`ln -s .`) is skipped, so the search ends
        for e in walkdir::WalkDir::new(path).follow_links(true) {
            let e = match e {
                Ok(e) => e,
                Err(e) if e.loop_ancestor().is_some() => continue,
                Err(e) => {
                    let at = e.path().unwrap_or(path).to_path_buf();
                    return Err(FileError::io(&at, std::io::Error::other(e.to_string())));
                }
            };
            if e.file_type().is_file() && task_of(e.path()).is_some() {
                files.push(e.path().to_path_buf());
            }
        }
    }
    files.sort();
    let mut out: IndexMap<String, PathBuf> = IndexMap::new();
    for f in files {
        let task = task_of(&f).ok_or_else(|| {
            FileError::invalid(
                &f,
                "not named like a samples file (samples_<task>_<timestamp>.jsonl)",
            )
        })?;
        if let Some(prev) = out.get(&task) {
            return Err(FileError::invalid(
                path,
                format!(
                    "two sample files for task `{task}`: {} and {}; point the model at one",
                    prev.display(),
                    f.display()
                ),
            ));
        }
        out.insert(task, f);
    }
    if out.is_empty() {
        return Err(FileError::invalid(
            path,
            "no samples_<task>_<timestamp>.jsonl here (run lm-eval with --log_samples)",
        ));
    }
    Ok(out)
}

fn number(v: &serde_json::Value) -> Option<f64> {
    match v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The (context, continuation) pairs of a sample's `arguments`.
fn pairs(args: &serde_json::Value) -> Option<Vec<(String, String)>> {
    let pair = |v: &serde_json::Value| -> Option<(String, String)> {
        match v {
            serde_json::Value::Object(m) => Some((
                m.get("arg_0")?.as_str()?.to_string(),
                m.get("arg_1")?.as_str()?.to_string(),
            )),
            serde_json::Value::Array(a) => Some((
                a.first()?.as_str()?.to_string(),
                a.get(1)?.as_str()?.to_string(),
            )),
            _ => None,
        }
    };
    match args {
        serde_json::Value::Object(m) => {
            let mut v: Vec<(usize, (String, String))> = m
                .iter()
                .map(|(k, v)| Some((k.strip_prefix("gen_args_")?.parse().ok()?, pair(v)?)))
                .collect::<Option<_>>()?;
            v.sort_by_key(|(i, _)| *i);
            Some(v.into_iter().map(|(_, p)| p).collect())
        }
        serde_json::Value::Array(a) => a.iter().map(pair).collect(),
        _ => None,
    }
}

fn read_samples(
    file: &Path,
    task: &str,
    format: AnswerFormat,
    skipped: &mut Skipped,
) -> Result<Vec<Answered>, FileError> {
    use std::io::BufRead;
    let f = std::fs::File::open(file).map_err(|e| FileError::io(file, e))?;
    let mut out = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|e| FileError::io(file, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let at = format!("line {}", i + 1);
        let s: Sample = serde_json::from_str(&line).map_err(|e| FileError::Parse {
            path: file.to_path_buf(),
            at: at.clone(),
            msg: format!("not an lm-eval sample: {e}"),
        })?;
        let doc_id = match &s.doc_id {
            serde_json::Value::String(x) => x.clone(),
            other => other.to_string(),
        };
        let id = format!("{task}:{doc_id}");
        if let Some(first) = seen.insert(id.clone(), i + 1) {
            return Err(FileError::Duplicate {
                path: file.to_path_buf(),
                id,
                first: format!("line {first}"),
                second: at,
            });
        }
        let Some(args) = pairs(&s.arguments) else {
            skipped.add(at, "`arguments` are not (context, continuation) pairs");
            continue;
        };
        let loglik: Option<Vec<f64>> = s
            .filtered_resps
            .iter()
            .map(|r| match r {
                serde_json::Value::Array(a) => a.first().and_then(number),
                other => number(other),
            })
            .collect();
        let Some(loglik) =
            loglik.filter(|l| l.len() == args.len() && l.iter().all(|x| x.is_finite()))
        else {
            skipped.add(
                at,
                "not a multiple-choice sample (no finite log-likelihood per option)",
            );
            continue;
        };
        if args.len() < 2 || args.len() > rgd_core::N_LETTERS {
            skipped.add(
                at,
                format!(
                    "{} options (rgd takes 2 to {})",
                    args.len(),
                    rgd_core::N_LETTERS
                ),
            );
            continue;
        }
        let options: Vec<String> = args.iter().map(|(_, c)| c.trim().to_string()).collect();
        let target = match &s.target {
            serde_json::Value::Number(n) => Cell::Number(n.as_f64().unwrap_or(f64::NAN)),
            serde_json::Value::String(t) => Cell::Text(t.clone()),
            _ => Cell::Null,
        };
        let answer = match resolve_answer(&target, &options, None, format) {
            Ok(a) => a,
            Err(e) => {
                skipped.add(at, format!("a target {e}"));
                continue;
            }
        };
        let text = s
            .doc
            .get("question")
            .and_then(|q| q.as_str())
            .map(String::from)
            .unwrap_or_else(|| args[0].0.clone());
        out.push(Answered {
            question: Question {
                id,
                subject: task.to_string(),
                text,
                options,
                answer: Some(answer),
                source: Some(format!("lm-eval {}", file.display())),
            },
            loglik,
        });
    }
    Ok(out)
}

impl LmEval {
    /// Load the dataset; the lines to warn about.
    pub fn load_with_warnings(&self, ctx: &Context) -> Result<(Dataset, Vec<String>), FileError> {
        if self.models.is_empty() {
            return Err(FileError::invalid(
                &ctx.base_dir,
                "[data] type = \"lm_eval\": `models` names no model",
            ));
        }
        if !(self.test_share > 0.0 && self.test_share < 1.0) {
            return Err(FileError::invalid(
                &ctx.base_dir,
                format!("`test_share` must be in (0, 1), got {}", self.test_share),
            ));
        }
        let names: Vec<String> = self.models.keys().cloned().collect();
        let mut warnings = Vec::new();
        // per model: question id -> its log-likelihood per option
        let mut per_model: Vec<HashMap<String, Vec<f64>>> = Vec::new();
        let mut questions: Vec<Question> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut tasks: Vec<String> = self.tasks.clone();
        for (name, path) in &self.models {
            let root = ctx.resolve(path);
            let files = sample_files(&root)?;
            if tasks.is_empty() {
                tasks = files.keys().cloned().collect();
            }
            let mut answers = HashMap::new();
            for task in &tasks {
                let Some(file) = files.get(task) else {
                    warnings.push(format!(
                        "{}: model `{name}` has no samples for task `{task}` (abstains on all of it)",
                        root.display()
                    ));
                    continue;
                };
                let mut skipped = Skipped::new(file);
                for a in read_samples(file, task, self.target_format, &mut skipped)? {
                    match index.get(&a.question.id) {
                        Some(&q) => {
                            let n = questions[q].options.len();
                            let first = &questions[q];
                            // the same document id must be the same question in every model's
                            // samples: another text, option list or target is another version
                            let differs = [
                                ("question text", a.question.text != first.text),
                                ("options", a.question.options != first.options),
                                ("target", a.question.answer != first.answer),
                            ];
                            if a.loglik.len() == n
                                && let Some((what, _)) = differs.iter().find(|(_, d)| *d)
                            {
                                return Err(FileError::invalid(
                                    file,
                                    format!(
                                        "document `{}` has another {what} here than in an earlier model's samples: the models ran different versions of the task",
                                        a.question.id
                                    ),
                                ));
                            }
                            if a.loglik.len() != n {
                                return Err(FileError::invalid(
                                    file,
                                    format!(
                                        "document `{}` has {} options here but {n} in an earlier model's samples: the models ran different versions of the task",
                                        a.question.id,
                                        a.loglik.len(),
                                    ),
                                ));
                            }
                        }
                        None => {
                            index.insert(a.question.id.clone(), questions.len());
                            questions.push(a.question.clone());
                        }
                    }
                    answers.insert(a.question.id, a.loglik);
                }
                warnings.extend(skipped.line("sample(s) skipped"));
            }
            per_model.push(answers);
        }
        let n = questions.len();
        let k = names.len();
        let mut choice = Array2::from_elem((n, k), None);
        let mut confidence = Array2::from_elem((n, k), f64::NAN);
        for (m, answers) in per_model.iter().enumerate() {
            let mut missing = 0;
            for (q, question) in questions.iter().enumerate() {
                let Some(ll) = answers.get(&question.id) else {
                    missing += 1;
                    continue;
                };
                let (best, &top) = ll
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(&a.0)))
                    .expect("two or more options");
                let lse = top + ll.iter().map(|x| (x - top).exp()).sum::<f64>().ln();
                choice[[q, m]] = rgd_core::Letter::from_index(best);
                confidence[[q, m]] = top - lse;
            }
            if missing > 0 {
                warnings.push(format!(
                    "model `{}` has no sample for {missing} of the {n} documents (abstentions there)",
                    names[m]
                ));
            }
        }
        let all = Collected {
            models: names,
            embeddings: vec![None; n],
            choice,
            confidence,
            correct: None,
            cost: None,
            latency: None,
            questions,
        };
        let ds = all.into_dataset(&self.task, self.test_share, self.seed, &ctx.base_dir)?;
        Ok((ds, warnings))
    }
}

impl DataSource for LmEval {
    fn load(&self, ctx: &Context) -> rgd_core::Result<Dataset> {
        let (ds, warnings) = self.load_with_warnings(ctx)?;
        for w in warnings {
            ctx.warn(w);
        }
        Ok(ds)
    }
}

rgd_core::register!(data_source, "lm_eval", LmEval);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_names_come_from_the_file_name() {
        let t = |s: &str| task_of(Path::new(s));
        assert_eq!(
            t("out/m/samples_arc_easy_2026-11-30T03-07-52.875296.jsonl").as_deref(),
            Some("arc_easy")
        );
        assert_eq!(
            t("samples_mmlu_2024-01-01T00-00-00.jsonl").as_deref(),
            Some("mmlu")
        );
        assert_eq!(t("results_2024-01-01T00-00-00.json"), None);
        assert_eq!(t("samples_x.jsonl"), None);
    }
}
