//! Response matrices: questions plus each model's answer, as a `responses` data source.
//!
//! - **wide**: one row per question, columns per model named by templates (`{model}|choice`,
//!   RouterBench's `{model}` score and `{model}|total_cost`);
//! - **long**: one row per (question, model) (`question_id, model, choice, ...`; EmbedLLM's
//!   `prompt_id, model_name, label`).
//!
//! Each answer is a chosen letter (`choice`: a letter, a 0-based index or the option's text),
//! or, when that is all the file has, only whether it was right (`correct`: 0/1 or a
//! boolean); then routers that learn from the pool's letters (CASCAL) cannot run and say so.
//! Optional per answer: `confidence` (a log-probability), `cost`, `latency` (seconds).
//! Embeddings come from a column (`embedding`), from a separate table (`embeddings`: `id` and
//! `embedding` columns), or, when neither is given, from the pipeline's `[embedder]`.

use ndarray::Array2;
use rgd_core::{Context, DataSource, Dataset, Question};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::collected::{AnswerColumns, Collected, read_embeddings, split_by_subject};
use crate::questions::{AnswerFormat, Mapping, Options, read_questions};
use crate::table::{Cell, Format, Table};
use crate::{FileError, Skipped};

/// How the answers are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// One row per question, columns per model (named by `{model}` templates).
    Wide,
    /// One row per (question, model).
    Long,
}

/// Published response-matrix shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MatrixPreset {
    /// RouterBench (withmartian/routerbench, the `routerbench_0shot` table saved as CSV or
    /// Parquet): wide; `sample_id`, `prompt`, `eval_name`; per model a 0/1 score column named
    /// by the model and `{model}|total_cost`; models found from the cost columns.
    Routerbench,
    /// EmbedLLM (RZ412/EmbedLLM `train.csv`/`test.csv`): long; `model_id`, `model_name`,
    /// `prompt_id`, `prompt`, `label` (0/1), and `category` when present.
    Embedllm,
}

/// A response matrix (wide or long) read as a data source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResponseMatrix {
    /// One file holding every question: split into train and test by `test_share`.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// The training questions' file (with `test`, instead of `path`).
    #[serde(default)]
    pub train: Option<PathBuf>,
    /// The test questions' file (with `train`).
    #[serde(default)]
    pub test: Option<PathBuf>,
    /// The files' format (default: from the extension).
    #[serde(default)]
    pub format: Option<Format>,
    /// A preset (`routerbench`, `embedllm`): the layout and column names below.
    #[serde(default)]
    pub preset: Option<MatrixPreset>,
    /// `wide` or `long` (required without a preset).
    #[serde(default)]
    pub layout: Option<Layout>,
    /// The question id's column (default `id`, long `question_id`).
    #[serde(default)]
    pub id: Option<String>,
    /// The question text's column (default `question`).
    #[serde(default)]
    pub question: Option<String>,
    /// The options: a list column (default `options` when present) or a column per option.
    #[serde(default)]
    pub options: Option<Options>,
    /// A list column of option labels the answer may name.
    #[serde(default)]
    pub labels: Option<String>,
    /// The gold answer's column (default `answer` when present).
    #[serde(default)]
    pub answer: Option<String>,
    /// How the answer (and `choice`) names the option.
    #[serde(default)]
    pub answer_format: AnswerFormat,
    /// The subject's column (default `subject` when present; else the file's name).
    #[serde(default)]
    pub subject: Option<String>,
    /// Long: the model's column (default `model`).
    #[serde(default)]
    pub model: Option<String>,
    /// Wide: the models, in pool order (default: every model the first `{model}` template
    /// that is not just `{model}` finds). Long: the models to keep (default: all).
    #[serde(default)]
    pub models: Vec<String>,
    /// The chosen option's column (long) or template (wide, e.g. `{model}|choice`).
    #[serde(default)]
    pub choice: Option<String>,
    /// Whether the answer was right (0/1): column (long) or template (wide).
    #[serde(default)]
    pub correct: Option<String>,
    /// The answer's confidence (a log-probability): column or template.
    #[serde(default)]
    pub confidence: Option<String>,
    /// The answer's cost: column or template.
    #[serde(default)]
    pub cost: Option<String>,
    /// The answer's latency in seconds: column or template.
    #[serde(default)]
    pub latency: Option<String>,
    /// The column holding each question's embedding (default `embedding` when present).
    #[serde(default)]
    pub embedding: Option<String>,
    /// A separate embeddings table (`id` and `embedding` columns, or the names above).
    #[serde(default)]
    pub embeddings: Option<PathBuf>,
    /// With `path`: the share of each subject's questions that forms the test split.
    #[serde(default)]
    pub test_share: Option<f64>,
    /// Seed of the train/test split.
    #[serde(default)]
    pub seed: u64,
    /// The task's name in reports (default: the file's name).
    #[serde(default)]
    pub task: Option<String>,
}

/// The settings with the preset's names filled in.
struct Resolved {
    layout: Layout,
    mapping: Mapping,
    model: String,
    choice: Option<String>,
    correct: Option<String>,
    confidence: Option<String>,
    cost: Option<String>,
    latency: Option<String>,
}

impl ResponseMatrix {
    fn resolve(&self, path: &Path) -> Result<Resolved, FileError> {
        let pick = |given: &Option<String>, preset: Option<&str>| -> Option<String> {
            given.clone().or(preset.map(String::from))
        };
        let (layout, id, question, subject, model, correct, cost) = match self.preset {
            Some(MatrixPreset::Routerbench) => (
                Layout::Wide,
                Some("sample_id"),
                Some("prompt"),
                Some("eval_name"),
                None,
                Some("{model}"),
                Some("{model}|total_cost"),
            ),
            Some(MatrixPreset::Embedllm) => (
                Layout::Long,
                Some("prompt_id"),
                Some("prompt"),
                Some("category"),
                Some("model_name"),
                Some("label"),
                None,
            ),
            None => {
                let layout = self.layout.ok_or_else(|| {
                    FileError::invalid(
                        path,
                        "set `layout` (\"wide\" or \"long\") or a `preset` (\"routerbench\", \"embedllm\")",
                    )
                })?;
                let id = match layout {
                    Layout::Wide => "id",
                    Layout::Long => "question_id",
                };
                (layout, Some(id), None, None, None, None, None)
            }
        };
        if self.layout.is_some_and(|l| l != layout) {
            return Err(FileError::invalid(
                path,
                format!("the preset's layout is {layout:?}, but `layout` says otherwise"),
            ));
        }
        let r = Resolved {
            layout,
            mapping: Mapping {
                preset: None,
                question: pick(&self.question, question),
                options: self.options.clone(),
                labels: self.labels.clone(),
                answer: self.answer.clone(),
                answer_format: self.answer_format,
                subject: pick(&self.subject, subject),
                id: pick(&self.id, id),
            },
            model: pick(&self.model, model).unwrap_or_else(|| "model".into()),
            choice: self.choice.clone(),
            correct: pick(&self.correct, correct),
            confidence: self.confidence.clone(),
            cost: pick(&self.cost, cost),
            latency: self.latency.clone(),
        };
        if r.choice.is_none() && r.correct.is_none() {
            return Err(FileError::invalid(
                path,
                "name the answers: `choice` (the chosen option) and/or `correct` (0/1)",
            ));
        }
        if layout == Layout::Wide {
            for (k, v) in [
                ("choice", &r.choice),
                ("correct", &r.correct),
                ("confidence", &r.confidence),
                ("cost", &r.cost),
                ("latency", &r.latency),
            ] {
                if v.as_ref().is_some_and(|t| !t.contains("{model}")) {
                    return Err(FileError::invalid(
                        path,
                        format!(
                            "wide layout: `{k}` must be a template containing `{{model}}`, e.g. \"{{model}}|{k}\""
                        ),
                    ));
                }
            }
        }
        Ok(r)
    }

    /// Load the dataset; the lines to warn about (rows skipped, abstentions filled in).
    pub fn load_with_warnings(&self, ctx: &Context) -> Result<(Dataset, Vec<String>), FileError> {
        let files: Vec<PathBuf> = match (&self.path, &self.train, &self.test) {
            (Some(p), None, None) => vec![ctx.resolve(p)],
            (None, Some(a), Some(b)) => vec![ctx.resolve(a), ctx.resolve(b)],
            _ => {
                return Err(FileError::invalid(
                    &ctx.base_dir,
                    "[data] type = \"responses\": give `path` (one file, split by `test_share`) or both `train` and `test`",
                ));
            }
        };
        if self.test_share.is_some() && files.len() == 2 {
            return Err(FileError::invalid(
                &files[0],
                "`test_share` splits one `path`; with `train` and `test` files it has no use",
            ));
        }
        let r = self.resolve(&files[0])?;
        let mut warnings = Vec::new();
        let mut collected = Vec::new();
        for f in &files {
            let t = Table::read(f, self.format)?;
            let (c, mut w) = match r.layout {
                Layout::Wide => self.wide(&t, &r)?,
                Layout::Long => self.long(&t, &r)?,
            };
            warnings.append(&mut w);
            collected.push(c);
        }
        let external = match &self.embeddings {
            Some(p) => Some(read_embeddings(
                &ctx.resolve(p),
                self.format,
                r.mapping.id.as_deref().unwrap_or("id"),
                self.embedding.as_deref().unwrap_or("embedding"),
            )?),
            None => None,
        };
        let models = collected[0].models.clone();
        let (train, test) = if collected.len() == 2 {
            let test = collected.pop().expect("two");
            let train = collected.pop().expect("two");
            // the same models in another order (the long layout lists them as their rows
            // come) are the same pool: the test columns follow the training file's order
            let test_models = test.models.clone();
            let Some(test) = test.in_model_order(&train.models) else {
                return Err(FileError::invalid(
                    &files[1],
                    format!(
                        "its models ({}) differ from the training file's ({})",
                        test_models.join(", "),
                        train.models.join(", ")
                    ),
                ));
            };
            (
                train.into_split("train", &files[0], external.as_ref())?,
                test.into_split("test", &files[1], external.as_ref())?,
            )
        } else {
            let share = self.test_share.unwrap_or(0.5);
            if !(share > 0.0 && share < 1.0) {
                return Err(FileError::invalid(
                    &files[0],
                    format!("`test_share` must be in (0, 1), got {share}"),
                ));
            }
            let all = collected.pop().expect("one");
            let (tr, te) = split_by_subject(&all.questions, share, self.seed);
            (
                all.select(&tr)
                    .into_split("train", &files[0], external.as_ref())?,
                all.select(&te)
                    .into_split("test", &files[0], external.as_ref())?,
            )
        };
        let ds = Dataset {
            task: self.task.clone().unwrap_or_else(|| {
                files[0]
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "responses".into())
            }),
            models,
            train,
            test,
        };
        Ok((ds, warnings))
    }

    /// The models of a wide table: `models`, or those the first template that is not just
    /// `{model}` finds among the columns.
    fn wide_models(&self, t: &Table, r: &Resolved) -> Result<Vec<String>, FileError> {
        if !self.models.is_empty() {
            return Ok(self.models.clone());
        }
        let template = [&r.choice, &r.cost, &r.confidence, &r.latency, &r.correct]
            .into_iter()
            .flatten()
            .find(|t| t.as_str() != "{model}")
            .ok_or_else(|| {
                FileError::invalid(
                    &t.path,
                    "cannot tell the models from a bare `{model}` template: list them in `models`",
                )
            })?;
        let (pre, post) = template
            .split_once("{model}")
            .expect("checked: has {model}");
        let found: Vec<String> = t
            .names()
            .into_iter()
            .filter(|c| c.len() > pre.len() + post.len() && c.starts_with(pre) && c.ends_with(post))
            .map(|c| c[pre.len()..c.len() - post.len()].to_string())
            .collect();
        if found.is_empty() {
            return Err(FileError::invalid(
                &t.path,
                format!(
                    "no column matches `{template}`, so no model was found (the file's columns: {})",
                    t.names().join(", ")
                ),
            ));
        }
        Ok(found)
    }

    fn wide(&self, t: &Table, r: &Resolved) -> Result<(Collected, Vec<String>), FileError> {
        let models = self.wide_models(t, r)?;
        let (rows, skipped) = read_questions(t, &r.mapping, false)?;
        let emb = self.embedding_column(t)?;
        let col = |tpl: &Option<String>| -> Result<Option<Vec<&[Cell]>>, FileError> {
            tpl.as_ref()
                .map(|tpl| {
                    models
                        .iter()
                        .map(|m| t.column(&tpl.replace("{model}", m)))
                        .collect()
                })
                .transpose()
        };
        let cols = AnswerColumns {
            choice: col(&r.choice)?,
            correct: col(&r.correct)?,
            confidence: col(&r.confidence)?,
            cost: col(&r.cost)?,
            latency: col(&r.latency)?,
        };
        let mut c = Collected::new(models, &cols, rows.len());
        let mut bad = Skipped::new(&t.path);
        for (q, (i, question)) in rows.into_iter().enumerate() {
            for m in 0..c.models.len() {
                c.put(q, m, &cols, i, &question, self.answer_format, t, &mut bad);
            }
            c.embeddings
                .push(emb.and_then(|e| e[i].number_list().map(|v| v.into_owned())));

            c.questions.push(question);
        }
        let warnings = [
            skipped.line("row(s) skipped"),
            bad.line("cell(s) unreadable, left unknown (an abstention, no confidence or no cost)"),
        ]
        .into_iter()
        .flatten()
        .collect();
        Ok((c, warnings))
    }

    fn long(&self, t: &Table, r: &Resolved) -> Result<(Collected, Vec<String>), FileError> {
        let qcols = r.mapping.columns(t, false)?;
        let model_col = t.column(&r.model)?;
        let emb = self.embedding_column(t)?;
        let col = |c: &Option<String>| -> Result<Option<Vec<&[Cell]>>, FileError> {
            c.as_ref().map(|c| Ok(vec![t.column(c)?])).transpose()
        };
        let cols = AnswerColumns {
            choice: col(&r.choice)?,
            correct: col(&r.correct)?,
            confidence: col(&r.confidence)?,
            cost: col(&r.cost)?,
            latency: col(&r.latency)?,
        };
        // first pass: the questions (first row of each id) and the models
        let mut skipped = Skipped::new(&t.path);
        let mut qindex: HashMap<String, usize> = HashMap::new();
        let mut first_row: Vec<usize> = Vec::new();
        let mut questions: Vec<Question> = Vec::new();
        let mut models: Vec<String> = self.models.clone();
        let mut mindex: HashMap<String, usize> = models
            .iter()
            .enumerate()
            .map(|(i, m)| (m.clone(), i))
            .collect();
        let mut row_of: Vec<Option<(usize, usize)>> = vec![None; t.n_rows];
        for i in 0..t.n_rows {
            let Some(model) = model_col[i].text().filter(|m| !m.trim().is_empty()) else {
                skipped.add(t.at(i), format!("no `{}`", r.model));
                continue;
            };
            let m = match mindex.get(model.as_ref()) {
                Some(&m) => m,
                None if self.models.is_empty() => {
                    models.push(model.to_string());
                    mindex.insert(model.to_string(), models.len() - 1);
                    models.len() - 1
                }
                None => continue,
            };
            let Some(id) = qcols.id(i) else {
                skipped.add(t.at(i), "no id");
                continue;
            };
            let q = match qindex.get(&id) {
                Some(&q) => {
                    // every row of a question must say the same question: the first row's
                    // text, options and key are used, so another one is a conflict, not a
                    // choice to make silently
                    if let Ok(again) = qcols.question(i, self.answer_format) {
                        let first = &questions[q];
                        let differs = [
                            ("question text", again.text != first.text),
                            ("options", again.options != first.options),
                            ("answer", again.answer != first.answer),
                            ("subject", again.subject != first.subject),
                        ];
                        if let Some((what, _)) = differs.iter().find(|(_, d)| *d) {
                            return Err(FileError::invalid(
                                &t.path,
                                format!(
                                    "question `{id}`: {} gives another {what} than {}",
                                    t.at(i),
                                    t.at(first_row[q])
                                ),
                            ));
                        }
                    }
                    q
                }
                None => match qcols.question(i, self.answer_format) {
                    Ok(question) => {
                        questions.push(question);
                        first_row.push(i);
                        qindex.insert(id, questions.len() - 1);
                        questions.len() - 1
                    }
                    Err(why) => {
                        skipped.add(t.at(i), why);
                        continue;
                    }
                },
            };
            row_of[i] = Some((q, m));
        }
        if models.is_empty() {
            return Err(FileError::invalid(&t.path, "no model has a row"));
        }
        let mut c = Collected::new(models, &cols, questions.len());
        let mut seen: Array2<usize> =
            Array2::from_elem((questions.len(), c.models.len()), usize::MAX);
        let mut bad = Skipped::new(&t.path);
        for (i, qm) in row_of.iter().enumerate() {
            let Some((q, m)) = *qm else { continue };
            if seen[[q, m]] != usize::MAX {
                return Err(FileError::Duplicate {
                    path: t.path.clone(),
                    id: format!("{} for model {}", questions[q].id, c.models[m]),
                    first: t.at(seen[[q, m]]),
                    second: t.at(i),
                });
            }
            seen[[q, m]] = i;
            c.put(
                q,
                m,
                &cols,
                i,
                &questions[q],
                self.answer_format,
                t,
                &mut bad,
            );
        }
        let mut missing = Skipped::new(&t.path);
        for m in 0..c.models.len() {
            let n = (0..questions.len())
                .filter(|&q| seen[[q, m]] == usize::MAX)
                .count();
            if n > 0 {
                for q in (0..questions.len()).filter(|&q| seen[[q, m]] == usize::MAX) {
                    missing.add(
                        format!("question `{}`", questions[q].id),
                        format!("model `{}` has no row", c.models[m]),
                    );
                }
            }
        }
        c.embeddings = first_row
            .iter()
            .map(|&i| emb.and_then(|e| e[i].number_list().map(|v| v.into_owned())))
            .collect();
        c.questions = questions;
        let warnings = [
            skipped.line("row(s) skipped"),
            bad.line("cell(s) unreadable, left unknown (an abstention, no confidence or no cost)"),
            missing.line("answer(s) missing, abstentions there"),
        ]
        .into_iter()
        .flatten()
        .collect();
        Ok((c, warnings))
    }

    fn embedding_column<'t>(&self, t: &'t Table) -> Result<Option<&'t [Cell]>, FileError> {
        match &self.embedding {
            Some(c) if self.embeddings.is_none() => Ok(Some(t.column(c)?)),
            None if self.embeddings.is_none() && t.has("embedding") => {
                Ok(Some(t.column("embedding")?))
            }
            _ => Ok(None),
        }
    }
}

impl DataSource for ResponseMatrix {
    fn load(&self, ctx: &Context) -> rgd_core::Result<Dataset> {
        let (ds, warnings) = self.load_with_warnings(ctx)?;
        for w in warnings {
            ctx.warn(w);
        }
        Ok(ds)
    }
}

rgd_core::register!(data_source, "responses", ResponseMatrix);
