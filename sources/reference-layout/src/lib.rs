//! The authors' file layout (tianyiniu/RoutingGenData), read as a data source and written by
//! [`export`]:
//!
//! - `Data/<task>/<split>.json`: `[{question_id, category, question, options, answer}]`
//! - `Model_Responses/<task>-<split>/<model>.json`: the same items plus `selected_choice`,
//!   `avg_logprob` (confidence) and `is_correct`
//! - `embeddings/<task>-<split>.json`: `{question_id: [floats]}`
//!
//! The train split is the (generated) training data, the test split the real test set.
//! An unparseable `selected_choice` (e.g. `"N/A"`) is an abstention; a missing or `null`
//! `avg_logprob` is an unknown confidence (NaN).

use ndarray::Array2;
use rgd_core::{Context, DataSource, Dataset, Letter, Question, Responses, Split};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// A file or folder the layout needs is missing.
    #[error("{}: not found ({what})", path.display())]
    Missing {
        /// The path.
        path: PathBuf,
        /// What it should hold.
        what: String,
    },
    /// The data is inconsistent.
    #[error("{}: {msg}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
}

impl From<LayoutError> for rgd_core::Error {
    fn from(e: LayoutError) -> Self {
        rgd_core::Error::Data(e.to_string())
    }
}

/// Reads a routing dataset laid out as in the authors' code (Data/, Model_Responses/,
/// embeddings/): questions, the pool's recorded responses and embeddings; no model is called.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReferenceLayout {
    /// Root folder of the layout (relative to the pipeline file).
    pub path: PathBuf,
    /// Task name (`Data/<task>/`).
    pub task: String,
    /// Pool models to use; default: every `<model>.json` in `Model_Responses/<task>-<train split>/`.
    #[serde(default)]
    pub models: Option<Vec<String>>,
    /// Name of the training split.
    #[serde(default = "default_train")]
    pub train_split: String,
    /// Name of the test split.
    #[serde(default = "default_test")]
    pub test_split: String,
}

fn default_train() -> String {
    "train".into()
}
fn default_test() -> String {
    "test".into()
}

/// A question id: the authors use integers, other tools strings.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(untagged)]
enum Id {
    Int(i64),
    Str(String),
}

impl Id {
    fn key(&self) -> String {
        match self {
            Id::Int(i) => i.to_string(),
            Id::Str(s) => s.clone(),
        }
    }
}

#[derive(Deserialize)]
struct RawQuestion {
    question_id: Id,
    category: String,
    question: String,
    #[serde(default)]
    options: Vec<String>,
    #[serde(default)]
    answer: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawResponse {
    question_id: Id,
    #[serde(default)]
    selected_choice: Option<serde_json::Value>,
    #[serde(default)]
    avg_logprob: Option<f64>,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> rgd_core::Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            LayoutError::Missing {
                path: path.to_path_buf(),
                what: what.to_string(),
            }
            .into()
        } else {
            rgd_core::Error::io(path, e)
        }
    })?;
    serde_json::from_str(&text).map_err(|e| {
        // Python's json writes NaN/Infinity, which JSON (and serde_json) rejects: say so.
        let offset = text
            .split_inclusive('\n')
            .take(e.line().saturating_sub(1))
            .map(str::len)
            .sum::<usize>()
            + e.column().saturating_sub(1);
        let rest = text.get(offset..).unwrap_or("");
        let rest = rest.trim_start_matches(|c: char| c == ',' || c == '[' || c.is_whitespace());
        if ["NaN", "Infinity", "-Infinity"]
            .iter()
            .any(|t| rest.starts_with(t))
        {
            rgd_core::Error::Json {
                path: path.to_path_buf(),
                line: e.line(),
                column: e.column(),
                msg: "non-finite number (NaN or Infinity): every value must be finite".into(),
            }
        } else {
            rgd_core::Error::json(path, e)
        }
    })
}

/// `{question_id: [floats]}`, parsed in pieces on every core when the file is large: the
/// object is cut after an entry's closing `]` into `{...}` pieces that serde_json parses on
/// their own. (No JSON library parses one document in parallel; this only chooses where to cut,
/// and any piece that does not parse on its own sends the whole file through
/// [`read_json`], whose errors name the line.)
fn read_embeddings(path: &Path) -> rgd_core::Result<HashMap<String, Vec<f32>>> {
    read_embeddings_in_pieces(path, 16 << 20)
}

fn read_embeddings_in_pieces(
    path: &Path,
    piece_bytes: usize,
) -> rgd_core::Result<HashMap<String, Vec<f32>>> {
    use rayon::prelude::*;
    let piece = piece_bytes.max(1);
    let what = "{question_id: [floats]}";
    let Ok(text) = std::fs::read_to_string(path) else {
        return read_json(path, what);
    };
    let body = text.trim();
    let inner = match body.strip_prefix('{').and_then(|b| b.strip_suffix('}')) {
        Some(inner) if inner.len() > 2 * piece => inner,
        _ => return read_json(path, what),
    };
    // cut points: the first `],` after each piece bytes, followed by the next key's quote
    let bytes = inner.as_bytes();
    let mut cuts = vec![0];
    let mut at = piece;
    while at < bytes.len() {
        let Some(k) = inner[at..].find("],") else {
            break;
        };
        let end = at + k + 1; // just after `]`
        let next = inner[end + 1..].trim_start();
        if next.starts_with('"') {
            cuts.push(end + 1); // just after the `,`
            at = end + piece;
        } else {
            at = end + 1;
        }
    }
    cuts.push(bytes.len() + 1);
    let pieces: Option<Vec<HashMap<String, Vec<f32>>>> = cuts
        .windows(2)
        .collect::<Vec<_>>()
        .par_iter()
        .map(|w| {
            let piece = &inner[w[0]..w[1] - 1];
            serde_json::from_str(&format!("{{{piece}}}")).ok()
        })
        .collect();
    match pieces {
        Some(pieces) => {
            let mut out = HashMap::with_capacity(pieces.iter().map(HashMap::len).sum());
            for p in pieces {
                out.extend(p);
            }
            Ok(out)
        }
        None => read_json(path, what),
    }
}

fn letter_of(v: &Option<serde_json::Value>) -> Option<Letter> {
    match v {
        Some(serde_json::Value::String(s)) => Letter::parse(s),
        _ => None,
    }
}

impl ReferenceLayout {
    fn list_models(&self, root: &Path) -> rgd_core::Result<Vec<String>> {
        let dir = root
            .join("Model_Responses")
            .join(format!("{}-{}", self.task, self.train_split));
        let rd = std::fs::read_dir(&dir).map_err(|_| LayoutError::Missing {
            path: dir.clone(),
            what: "one <model>.json per pool model".into(),
        })?;
        let mut models: Vec<String> = rd
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let p = e.path();
                (p.extension()? == "json").then(|| p.file_stem()?.to_str().map(String::from))?
            })
            .collect();
        models.sort();
        if models.is_empty() {
            return Err(LayoutError::Missing {
                path: dir,
                what: "at least one <model>.json".into(),
            }
            .into());
        }
        Ok(models)
    }

    fn load_split(&self, root: &Path, split: &str, models: &[String]) -> rgd_core::Result<Split> {
        let data_path = root
            .join("Data")
            .join(&self.task)
            .join(format!("{split}.json"));
        let resp_path = |m: &str| {
            root.join("Model_Responses")
                .join(format!("{}-{split}", self.task))
                .join(format!("{m}.json"))
        };
        let emb_path = root
            .join("embeddings")
            .join(format!("{}-{split}.json", self.task));
        // every file of the split parsed at once, one per core (parsing is the whole cost)
        use rayon::prelude::*;
        let (raw, (responses, emb)) = rayon::join(
            || read_json::<Vec<RawQuestion>>(&data_path, "the questions of the split"),
            || {
                rayon::join(
                    || {
                        models
                            .par_iter()
                            .map(|m| {
                                read_json::<Vec<RawResponse>>(
                                    &resp_path(m),
                                    "the model's responses",
                                )
                            })
                            .collect::<rgd_core::Result<Vec<_>>>()
                    },
                    || read_embeddings(&emb_path),
                )
            },
        );
        let (raw, responses, emb) = (raw?, responses?, emb?);
        let mut index: HashMap<String, usize> = HashMap::with_capacity(raw.len());
        let mut questions = Vec::with_capacity(raw.len());
        for (i, r) in raw.into_iter().enumerate() {
            let id = r.question_id.key();
            if index.insert(id.clone(), i).is_some() {
                return Err(LayoutError::Invalid {
                    path: data_path,
                    msg: format!("duplicate question_id `{id}`"),
                }
                .into());
            }
            let answer = match &r.answer {
                None | Some(serde_json::Value::Null) => None,
                Some(v) => {
                    Some(
                        letter_of(&Some(v.clone())).ok_or_else(|| LayoutError::Invalid {
                            path: data_path.clone(),
                            msg: format!("question `{id}`: answer {v} is not a letter A..T"),
                        })?,
                    )
                }
            };
            questions.push(Question {
                id,
                subject: r.category,
                text: r.question,
                options: r.options,
                answer,
                source: None,
            });
        }
        let n = questions.len();
        let mut choice = Array2::from_elem((n, models.len()), None);
        let mut confidence = Array2::from_elem((n, models.len()), f64::NAN);
        for (j, (m, resp)) in models.iter().zip(responses).enumerate() {
            let path = resp_path(m);
            let mut seen = vec![false; n];
            for r in resp {
                let id = r.question_id.key();
                let Some(&q) = index.get(&id) else {
                    return Err(LayoutError::Invalid {
                        path,
                        msg: format!(
                            "response for unknown question `{id}` (not in {})",
                            data_path.display()
                        ),
                    }
                    .into());
                };
                if std::mem::replace(&mut seen[q], true) {
                    return Err(LayoutError::Invalid {
                        path,
                        msg: format!("two responses for question `{id}`"),
                    }
                    .into());
                }
                choice[[q, j]] = letter_of(&r.selected_choice);
                confidence[[q, j]] = r.avg_logprob.unwrap_or(f64::NAN);
            }
            if let Some(q) = seen.iter().position(|s| !s) {
                return Err(LayoutError::Invalid {
                    path,
                    msg: format!(
                        "no response for question `{}` ({} of {n} questions missing)",
                        questions[q].id,
                        seen.iter().filter(|s| !**s).count()
                    ),
                }
                .into());
            }
        }
        let dim = questions
            .first()
            .and_then(|q| emb.get(&q.id))
            .map(Vec::len)
            .unwrap_or(0);
        let mut embeddings = Array2::zeros((n, dim));
        for (i, q) in questions.iter().enumerate() {
            let v = emb.get(&q.id).ok_or_else(|| LayoutError::Invalid {
                path: emb_path.clone(),
                msg: format!("no embedding for question `{}`", q.id),
            })?;
            if v.len() != dim {
                return Err(LayoutError::Invalid {
                    path: emb_path,
                    msg: format!(
                        "embedding of question `{}` has {} values, expected {dim}",
                        q.id,
                        v.len()
                    ),
                }
                .into());
            }
            if v.iter().any(|x| !x.is_finite()) {
                return Err(LayoutError::Invalid {
                    path: emb_path,
                    msg: format!("embedding of question `{}` has a non-finite value", q.id),
                }
                .into());
            }
            embeddings
                .row_mut(i)
                .assign(&ndarray::ArrayView1::from(&v[..]));
        }
        Ok(Split {
            name: split.to_string(),
            questions,
            responses: Responses {
                choice,
                confidence,
                latency: None,
                correct: None,
                cost: None,
            },
            embeddings,
            generator_answer: None,
            call_failures: Default::default(),
        })
    }
}

impl DataSource for ReferenceLayout {
    fn load(&self, ctx: &Context) -> rgd_core::Result<Dataset> {
        let root = ctx.resolve(&self.path);
        if !root.is_dir() {
            return Err(LayoutError::Missing {
                path: root,
                what: "the layout's root folder (Data/, Model_Responses/, embeddings/)".into(),
            }
            .into());
        }
        let models = match &self.models {
            Some(m) if !m.is_empty() => m.clone(),
            _ => self.list_models(&root)?,
        };
        let (train, test) = rayon::join(
            || self.load_split(&root, &self.train_split, &models),
            || self.load_split(&root, &self.test_split, &models),
        );
        let (train, test) = (train?, test?);
        for (j, m) in models.iter().enumerate() {
            let answered = train.responses.choice.column(j).iter().flatten().count()
                + test.responses.choice.column(j).iter().flatten().count();
            if answered == 0 {
                ctx.info(format!(
                    "warning: model `{m}` never gave a parseable answer; it abstains everywhere"
                ));
            }
        }
        // validated where it enters the run (`rgd_experiment::run::load_data`)
        Ok(Dataset {
            task: self.task.clone(),
            models,
            train,
            test,
        })
    }
}

rgd_core::register!(data_source, "reference_layout", ReferenceLayout);

fn write_json<T: Serialize>(path: &Path, value: &T) -> rgd_core::Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(|e| rgd_core::Error::io(d, e))?;
    }
    let f = std::fs::File::create(path).map_err(|e| rgd_core::Error::io(path, e))?;
    let mut w = std::io::BufWriter::new(f);
    serde_json::to_writer(&mut w, value).map_err(|e| rgd_core::Error::json(path, e))?;
    std::io::Write::flush(&mut w).map_err(|e| rgd_core::Error::io(path, e))
}

fn export_id(id: &str) -> Id {
    id.parse::<i64>()
        .map(Id::Int)
        .unwrap_or_else(|_| Id::Str(id.to_string()))
}

fn export_split(root: &Path, task: &str, models: &[String], split: &Split) -> rgd_core::Result<()> {
    let items: Vec<serde_json::Value> = split
        .questions
        .iter()
        .map(|q| {
            serde_json::json!({
                "question_id": export_id(&q.id),
                "category": q.subject,
                "question": q.text,
                "options": q.options,
                "answer": q.answer.map(|a| a.to_string()),
            })
        })
        .collect();
    write_json(
        &root
            .join("Data")
            .join(task)
            .join(format!("{}.json", split.name)),
        &items,
    )?;
    let consensus = rgd_labelers::Consensus::default()
        .compute(split)
        .map_err(rgd_core::Error::from)?;
    for (j, m) in models.iter().enumerate() {
        let rows: Vec<serde_json::Value> = items
            .iter()
            .enumerate()
            .map(|(q, item)| {
                let mut o = item.clone();
                let c = split.responses.choice[[q, j]];
                let lp = split.responses.confidence[[q, j]];
                let obj = o.as_object_mut().expect("item is an object");
                obj.insert(
                    "selected_choice".into(),
                    c.map(|c| c.to_string())
                        .unwrap_or_else(|| "N/A".into())
                        .into(),
                );
                obj.insert("avg_logprob".into(), finite(lp));
                obj.insert(
                    "is_correct".into(),
                    u8::from(split.responses.is_correct(q, j, split.questions[q].answer)).into(),
                );
                obj.insert("consensus_score".into(), finite(consensus.scores[[q, j]]));
                obj.insert("z_score".into(), finite(consensus.z[[q, j]]));
                o
            })
            .collect();
        write_json(
            &root
                .join("Model_Responses")
                .join(format!("{task}-{}", split.name))
                .join(format!("{m}.json")),
            &rows,
        )?;
    }
    let emb: serde_json::Map<String, serde_json::Value> = split
        .questions
        .iter()
        .enumerate()
        .map(|(i, q)| {
            let v: Vec<f64> = split.embeddings.row(i).iter().map(|&x| x as f64).collect();
            (q.id.clone(), serde_json::Value::from(v))
        })
        .collect();
    write_json(
        &root
            .join("embeddings")
            .join(format!("{task}-{}.json", split.name)),
        &emb,
    )
}

fn finite(x: f64) -> serde_json::Value {
    if x.is_finite() {
        x.into()
    } else {
        serde_json::Value::Null
    }
}

/// Write a dataset in the authors' layout under `root` (both splits; responses carry
/// `consensus_score` and `z_score` as the authors' preprocessing adds them), so their scripts
/// can read what rgd produces.
pub fn export(dataset: &Dataset, root: &Path) -> rgd_core::Result<()> {
    export_split(root, &dataset.task, &dataset.models, &dataset.train)?;
    export_split(root, &dataset.task, &dataset.models, &dataset.test)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeddings_parsed_in_pieces_equal_one_parse_even_when_a_key_looks_like_a_cut() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("e.json");
        let mut entries: Vec<String> = (0..500)
            .map(|i| format!("\"q{i}\": [{}, -0.5, 1e-3]", i as f32 / 7.0))
            .collect();
        entries.insert(250, "\"odd],\\\"key\": [1.0, 2.0, 3.0]".into());
        for sep in [",", ", ", ",\n  "] {
            std::fs::write(&p, format!("{{{}}}", entries.join(sep))).unwrap();
            let whole: HashMap<String, Vec<f32>> =
                serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            for piece in [1, 100, 1000, 1 << 20] {
                assert_eq!(
                    read_embeddings_in_pieces(&p, piece).unwrap(),
                    whole,
                    "piece {piece}"
                );
            }
        }
        std::fs::write(&p, "{\"a\": [1, 2], \"b\": [3, NaN]}").unwrap();
        let e = read_embeddings_in_pieces(&p, 1).unwrap_err().to_string();
        assert!(e.contains("e.json") && e.contains("NaN"), "{e}");
    }
}
