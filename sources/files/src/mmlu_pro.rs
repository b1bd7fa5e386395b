//! The published model outputs of MMLU-Pro (TIGER-AI-Lab/MMLU-Pro, `eval_results/`) as a data
//! source (`mmlu_pro`): one file per model, `model_outputs_<model>_5shots.json` or the `.zip`
//! holding it, each a JSON list with one record per test question: `question_id`,
//! `question`, `options` (up to 10), `answer` (the gold letter), `category` (the subject),
//! `src` and `pred` (the letter the model's chain of thought ended with; `null` when none was
//! found). The letter is the model's choice and `null` an abstention; the confidence is
//! unknown. The questions are split per subject into train and test (`test_share`, seeded),
//! as the authors' code splits its data.

use indexmap::IndexMap;
use ndarray::Array2;
use rgd_core::{Context, DataSource, Dataset, Letter, Question};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use crate::collected::Collected;
use crate::{FileError, Skipped};

/// The published MMLU-Pro outputs of several models (one JSON file, or its zip, per model).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MmluPro {
    /// Model name -> its `model_outputs_*.json` file (or the `.zip` holding it).
    pub models: IndexMap<String, PathBuf>,
    /// The share of each subject's questions that forms the test split.
    #[serde(default = "default_share")]
    pub test_share: f64,
    /// Seed of the train/test split.
    #[serde(default)]
    pub seed: u64,
    /// The task's name in reports.
    #[serde(default = "default_task")]
    pub task: String,
}

fn default_share() -> f64 {
    0.4
}
fn default_task() -> String {
    "MMLU-Pro".into()
}

/// One record of a published file (the fields rgd reads; the others are ignored).
#[derive(Deserialize)]
struct Record {
    question_id: serde_json::Value,
    question: String,
    options: Vec<String>,
    answer: String,
    category: String,
    #[serde(default)]
    src: Option<String>,
    #[serde(default)]
    pred: Option<String>,
}

/// The JSON text of a published file: the file itself, or the one `.json` inside its zip.
fn read_text(path: &Path) -> Result<String, FileError> {
    let bytes = std::fs::read(path).map_err(|e| FileError::io(path, e))?;
    if path.extension().is_none_or(|e| e != "zip") {
        return String::from_utf8(bytes)
            .map_err(|_| FileError::invalid(path, "not UTF-8 text (a published file is JSON)"));
    }
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| FileError::invalid(path, format!("not a zip archive: {e}")))?;
    let names: Vec<String> = zip
        .file_names()
        .filter(|n| n.ends_with(".json"))
        .map(str::to_string)
        .collect();
    let [name] = names.as_slice() else {
        return Err(FileError::invalid(
            path,
            format!(
                "a published zip holds one `.json` file; this one holds {}",
                names.len()
            ),
        ));
    };
    let mut f = zip
        .by_name(name)
        .map_err(|e| FileError::invalid(path, format!("{name}: {e}")))?;
    let mut text = String::new();
    f.read_to_string(&mut text)
        .map_err(|e| FileError::invalid(path, format!("{name}: {e}")))?;
    Ok(text)
}

/// A question id as text: published ids are numbers; strings are taken as they are.
fn id_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// One model's file: its questions in file order and its letter per question id.
type ModelFile = (Vec<Question>, HashMap<String, Option<Letter>>);

fn read_file(path: &Path, skipped: &mut Skipped) -> Result<ModelFile, FileError> {
    let text = read_text(path)?;
    let records: Vec<serde_json::Value> = serde_json::from_str(&text).map_err(|e| {
        FileError::invalid(
            path,
            format!(
                "not the published format (a JSON list of records): line {} column {}: {e}",
                e.line(),
                e.column()
            ),
        )
    })?;
    let mut questions = Vec::with_capacity(records.len());
    let mut preds = HashMap::with_capacity(records.len());
    for (i, v) in records.into_iter().enumerate() {
        let at = |id: &str| format!("record {i} (question_id {id})");
        let shown = v
            .get("question_id")
            .and_then(id_text)
            .unwrap_or_else(|| "?".into());
        let r: Record = serde_json::from_value(v)
            .map_err(|e| FileError::invalid(path, format!("{}: {e}", at(&shown))))?;
        let id = id_text(&r.question_id).ok_or_else(|| {
            FileError::invalid(
                path,
                format!("record {i}: `question_id` must be a number or a non-empty string"),
            )
        })?;
        if r.options.is_empty() || r.options.len() > rgd_core::N_LETTERS {
            return Err(FileError::invalid(
                path,
                format!(
                    "{}: {} options (1 to {} are readable)",
                    at(&id),
                    r.options.len(),
                    rgd_core::N_LETTERS
                ),
            ));
        }
        let answer = Letter::parse(&r.answer)
            .filter(|a| a.index() < r.options.len())
            .ok_or_else(|| {
                FileError::invalid(
                    path,
                    format!(
                        "{}: `answer` `{}` names none of its {} options",
                        at(&id),
                        r.answer,
                        r.options.len()
                    ),
                )
            })?;
        let pred = match r.pred.as_deref() {
            None => None,
            Some(p) => match Letter::parse(p).filter(|l| l.index() < r.options.len()) {
                Some(l) => Some(l),
                None => {
                    skipped.add(at(&id), "a `pred` that names no option (an abstention)");
                    None
                }
            },
        };
        if preds.insert(id.clone(), pred).is_some() {
            return Err(FileError::invalid(
                path,
                format!("{}: the question id is seen twice", at(&id)),
            ));
        }
        questions.push(Question {
            id,
            subject: r.category,
            text: r.question,
            options: r.options,
            answer: Some(answer),
            source: r.src,
        });
    }
    if questions.is_empty() {
        return Err(FileError::invalid(path, "no record"));
    }
    Ok((questions, preds))
}

impl MmluPro {
    /// Load the dataset; the lines to warn about.
    pub fn load_with_warnings(&self, ctx: &Context) -> Result<(Dataset, Vec<String>), FileError> {
        if self.models.is_empty() {
            return Err(FileError::invalid(
                &ctx.base_dir,
                "[data] type = \"mmlu_pro\": `models` names no model",
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
        let mut questions: Vec<Question> = Vec::new();
        let mut first_file = PathBuf::new();
        let mut per_model = Vec::with_capacity(names.len());
        // questions written differently in two runs (MMLU-Pro was revised between some of
        // them): left out, counted, so every kept question is the one every model answered
        let mut revised: std::collections::BTreeMap<String, PathBuf> = Default::default();
        for path in self.models.values() {
            let path = ctx.resolve(path);
            let mut skipped = Skipped::new(&path);
            let (qs, preds) = read_file(&path, &mut skipped)?;
            warnings.extend(skipped.line("prediction(s) read as abstentions"));
            if questions.is_empty() {
                questions = qs;
                first_file = path.clone();
            } else {
                // every model answered the same questions, the same way written
                if qs.len() != questions.len() {
                    return Err(FileError::invalid(
                        &path,
                        format!(
                            "{} questions, but {} has {}: the models' question sets differ",
                            qs.len(),
                            first_file.display(),
                            questions.len()
                        ),
                    ));
                }
                let known: HashMap<&str, &Question> =
                    questions.iter().map(|q| (q.id.as_str(), q)).collect();
                for q in &qs {
                    match known.get(q.id.as_str()) {
                        None => {
                            return Err(FileError::invalid(
                                &path,
                                format!(
                                    "question_id {} is not in {}: the models' question sets differ",
                                    q.id,
                                    first_file.display()
                                ),
                            ));
                        }
                        Some(k)
                            if k.text != q.text
                                || k.options != q.options
                                || k.answer != q.answer =>
                        {
                            revised.entry(q.id.clone()).or_insert_with(|| path.clone());
                        }
                        Some(_) => {}
                    }
                }
            }
            per_model.push(preds);
        }
        if let Some((id, file)) = revised.iter().next() {
            warnings.push(format!(
                "{} question(s) left out: their question, options or answer differ between the models' files (the first: question_id {id} in {} against {})",
                revised.len(),
                file.display(),
                first_file.display()
            ));
            questions.retain(|q| !revised.contains_key(&q.id));
        }
        let (n, k) = (questions.len(), names.len());
        let mut choice = Array2::from_elem((n, k), None);
        for (m, preds) in per_model.iter().enumerate() {
            for (q, question) in questions.iter().enumerate() {
                choice[[q, m]] = preds.get(&question.id).copied().flatten();
            }
        }
        let all = Collected {
            models: names,
            embeddings: vec![None; n],
            choice,
            confidence: Array2::from_elem((n, k), f64::NAN),
            correct: None,
            cost: None,
            latency: None,
            questions,
        };
        let ds = all.into_dataset(&self.task, self.test_share, self.seed, &ctx.base_dir)?;
        Ok((ds, warnings))
    }
}

impl DataSource for MmluPro {
    fn load(&self, ctx: &Context) -> rgd_core::Result<Dataset> {
        let (ds, warnings) = self.load_with_warnings(ctx)?;
        for w in warnings {
            ctx.warn(w);
        }
        Ok(ds)
    }
}

rgd_core::register!(data_source, "mmlu_pro", MmluPro);

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/formats/mmlu-pro")
    }

    fn source(models: &[(&str, &str)]) -> MmluPro {
        MmluPro {
            models: models
                .iter()
                .map(|(n, p)| (n.to_string(), PathBuf::from(p)))
                .collect(),
            test_share: 0.5,
            seed: 0,
            task: "MMLU-Pro".into(),
        }
    }

    /// The split holding question `id`, and its row there.
    fn find<'a>(ds: &'a Dataset, id: &str) -> (&'a rgd_core::Split, usize) {
        [&ds.train, &ds.test]
            .into_iter()
            .find_map(|s| s.questions.iter().position(|q| q.id == id).map(|q| (s, q)))
            .unwrap()
    }

    fn published() -> MmluPro {
        source(&[
            ("mistral", "model_outputs_Mistral-7B-v0.1_5shots.json"),
            ("llama", "model_outputs_Meta-Llama-3_1-8B_5shots.json"),
            ("qwen", "model_outputs_Qwen1.5-7B-Chat_5shots.zip"),
        ])
    }

    #[test]
    fn the_published_format_reads_letters_nulls_subjects_and_ten_options() {
        let (ds, warnings) = published()
            .load_with_warnings(&Context::new(fixture()))
            .unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(ds.models, ["mistral", "llama", "qwen"]);
        assert_eq!(ds.train.len() + ds.test.len(), 12);
        let all: Vec<&Question> = ds
            .train
            .questions
            .iter()
            .chain(&ds.test.questions)
            .collect();
        let mut subjects: Vec<&str> = all.iter().map(|q| q.subject.as_str()).collect();
        subjects.sort();
        subjects.dedup();
        assert_eq!(subjects, ["biology", "law", "math"]);
        // half of each subject's four questions is tested
        for s in subjects {
            assert_eq!(
                ds.test.questions.iter().filter(|q| q.subject == s).count(),
                2
            );
        }
        assert!(all.iter().any(|q| q.options.len() == 10));
        assert!(all.iter().any(|q| q.options.len() < 10));
        // question 872 (law): Mistral's chain of thought named no letter (`pred` null)
        let (split, q) = find(&ds, "872");
        assert_eq!(split.responses.choice[[q, 0]], None);
        assert_eq!(split.questions[q].answer, Letter::parse("G"));
        // the letters are the published `pred`s: Mistral chose B on question 7697 (key A)
        let (split, q) = find(&ds, "7697");
        assert_eq!(split.responses.choice[[q, 0]], Letter::parse("B"));
        assert_eq!(split.questions[q].answer, Letter::parse("A"));
        // no embeddings: the pipeline's [embedder] adds them
        assert_eq!(ds.train.embeddings.ncols(), 0);
    }

    /// The published Mistral file with `edit` applied to its records, written to a temp dir
    /// beside the unedited Llama file.
    fn edited(edit: impl FnOnce(&mut Vec<serde_json::Value>)) -> (tempfile::TempDir, MmluPro) {
        let t = tempfile::tempdir().unwrap();
        let read = |f: &str| -> Vec<serde_json::Value> {
            serde_json::from_str(&std::fs::read_to_string(fixture().join(f)).unwrap()).unwrap()
        };
        let mut a = read("model_outputs_Mistral-7B-v0.1_5shots.json");
        edit(&mut a);
        std::fs::write(t.path().join("a.json"), serde_json::to_string(&a).unwrap()).unwrap();
        let b = read("model_outputs_Meta-Llama-3_1-8B_5shots.json");
        std::fs::write(t.path().join("b.json"), serde_json::to_string(&b).unwrap()).unwrap();
        (t, source(&[("a", "a.json"), ("b", "b.json")]))
    }

    fn err(edit: impl FnOnce(&mut Vec<serde_json::Value>)) -> String {
        let (t, s) = edited(edit);
        s.load_with_warnings(&Context::new(t.path()))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn bad_records_are_named_with_the_file_and_record() {
        let e = err(|a| {
            a[3].as_object_mut().unwrap().remove("question_id");
        });
        assert!(
            e.contains("a.json") && e.contains("record 3") && e.contains("question_id"),
            "{e}"
        );
        let e = err(|a| {
            a[2].as_object_mut().unwrap().remove("options");
        });
        assert!(
            e.contains("a.json") && e.contains("record 2") && e.contains("options"),
            "{e}"
        );
        let e = err(|a| a[1] = a[0].clone());
        assert!(e.contains("seen twice") && e.contains("7697"), "{e}");
        let e = err(|a| {
            a.pop();
        });
        assert!(
            e.contains("b.json") && e.contains("question sets differ"),
            "{e}"
        );
        let (t, s) = edited(|a| a[0]["question"] = "another question".into());
        let (ds, warnings) = s.load_with_warnings(&Context::new(t.path())).unwrap();
        assert_eq!(ds.train.len() + ds.test.len(), 11);
        assert!(
            warnings.iter().any(|w| w.contains("1 question(s) left out")
                && w.contains("question_id 7697")
                && w.contains("b.json")),
            "{warnings:?}"
        );
        let e = err(|a| a[0]["answer"] = "Z".into());
        assert!(
            e.contains("record 0") && e.contains("names none of its"),
            "{e}"
        );
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("a.json"), "{\"not\": \"a list\"}").unwrap();
        let e = source(&[("a", "a.json")])
            .load_with_warnings(&Context::new(t.path()))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("a.json") && e.contains("not the published format"),
            "{e}"
        );
    }

    #[test]
    fn a_pred_that_names_no_option_is_an_abstention_counted_in_the_warnings() {
        // question 7697 has 8 options: `J` is beyond them
        let (t, s) = edited(|a| a[0]["pred"] = "J".into());
        let (ds, warnings) = s.load_with_warnings(&Context::new(t.path())).unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("1 x a `pred` that names no option"),
            "{warnings:?}"
        );
        let (split, q) = find(&ds, "7697");
        assert_eq!(split.responses.choice[[q, 0]], None);
    }
}
