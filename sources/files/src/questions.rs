//! Questions from a table: which columns hold the text, the options, the answer, the subject
//! and the id ([`Mapping`], with presets for common shapes), and the `file` question source.

use rgd_core::data::{Part, Sampling};
use rgd_core::{Context, Letter, N_LETTERS, Question, QuestionSource};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;

use crate::table::{Cell, Format, Table};
use crate::{FileError, Skipped};

/// Where the options are: one column holding a list, or one column per option.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Options {
    /// A column holding the list of options (`choices`).
    List(String),
    /// One column per option, in letter order (`["A", "B", "C", "D"]`).
    Columns(Vec<String>),
}

/// How the answer column names the right option.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AnswerFormat {
    /// A label from `labels` when given; else a letter (`B`), a 0-based index (`1`), or the
    /// option's own text.
    #[default]
    Auto,
    /// A letter A..T.
    Letter,
    /// A 0-based index.
    Index,
    /// A 1-based index.
    Index1,
    /// The text of the right option.
    Text,
}

/// Common shapes of question files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// Hugging Face `cais/mmlu`: `question`, `subject`, `choices` (a list), `answer` (0-based
    /// index).
    Mmlu,
    /// Hugging Face `allenai/ai2_arc`: `id`, `question`, `choices.text`, `choices.label`,
    /// `answerKey` (a label: `A`..`D` or `1`..`4`).
    Arc,
}

/// Which columns hold a question's parts. Unset names take the preset's, else the defaults:
/// `question`, `options`, `answer`, and `subject` and `id` when the file has them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// A preset for the column names (`mmlu`, `arc`).
    #[serde(default)]
    pub preset: Option<Preset>,
    /// The question text's column.
    #[serde(default)]
    pub question: Option<String>,
    /// The options: a list column, or a column per option.
    #[serde(default)]
    pub options: Option<Options>,
    /// A list column of option labels the answer may name (ARC's `choices.label`).
    #[serde(default)]
    pub labels: Option<String>,
    /// The answer's column.
    #[serde(default)]
    pub answer: Option<String>,
    /// How the answer names the option.
    #[serde(default)]
    pub answer_format: AnswerFormat,
    /// The subject's column (questions without one take the file's name).
    #[serde(default)]
    pub subject: Option<String>,
    /// The id's column (default: the row number).
    #[serde(default)]
    pub id: Option<String>,
}

/// The resolved column names of a [`Mapping`] on one table.
#[derive(Debug)]
pub(crate) struct Columns<'t> {
    question: &'t [Cell],
    options: Option<Vec<&'t [Cell]>>,
    options_list: bool,
    labels: Option<&'t [Cell]>,
    answer: Option<&'t [Cell]>,
    answer_name: String,
    subject: Option<&'t [Cell]>,
    id: Option<&'t [Cell]>,
    stem: String,
    /// A row without an answer is skipped (question files); otherwise it is unlabeled.
    answer_required: bool,
}

/// A question read from row `row`, or why the row was skipped.
pub(crate) type RowQuestion = Result<Question, String>;

impl Mapping {
    /// Resolve the columns on `t`. `need_options`: the options (and answer) must be there
    /// (a question file); otherwise they are read when present (a response matrix's prompts
    /// may be free text).
    pub(crate) fn columns<'t>(
        &self,
        t: &'t Table,
        need_options: bool,
    ) -> Result<Columns<'t>, FileError> {
        let (pq, po, pl, pa, ps, pi): (_, Option<Options>, _, _, _, _) = match self.preset {
            Some(Preset::Mmlu) => (
                "question",
                Some(Options::List("choices".into())),
                None,
                "answer",
                Some("subject"),
                None,
            ),
            Some(Preset::Arc) => (
                "question",
                Some(Options::List("choices.text".into())),
                Some("choices.label"),
                "answerKey",
                None,
                Some("id"),
            ),
            None => (
                "question",
                Some(Options::List("options".into())),
                None,
                "answer",
                None,
                None,
            ),
        };
        let question = t.column(self.question.as_deref().unwrap_or(pq))?;
        let options_spec = self.options.clone().or(po);
        let explicit_options = self.options.is_some() || self.preset.is_some();
        let options = match &options_spec {
            Some(Options::List(c)) if need_options || explicit_options || t.has(c) => {
                Some(vec![t.column(c)?])
            }
            Some(Options::Columns(cs)) => {
                if cs.len() < 2 || cs.len() > N_LETTERS {
                    return Err(FileError::invalid(
                        &t.path,
                        format!(
                            "`options` names {} columns: give 2 to {N_LETTERS}",
                            cs.len()
                        ),
                    ));
                }
                Some(cs.iter().map(|c| t.column(c)).collect::<Result<_, _>>()?)
            }
            _ => None,
        };
        let answer_name = self.answer.clone().unwrap_or_else(|| pa.to_string());
        let answer = if need_options || self.answer.is_some() || t.has(&answer_name) {
            Some(t.column(&answer_name)?)
        } else {
            None
        };
        let optional = |given: &Option<String>, preset: Option<&str>| -> Result<_, FileError> {
            match (given, preset) {
                (Some(c), _) => Ok(Some(t.column(c)?)),
                (None, Some(c)) if t.has(c) => Ok(Some(t.column(c)?)),
                _ => Ok(None),
            }
        };
        Ok(Columns {
            answer_required: need_options,
            question,
            options_list: matches!(options_spec, Some(Options::List(_))),
            options,
            // ARC's keys are labels (`A`.., or `1`..): without the labels a `1` would be
            // read as a 0-based index, one option off
            labels: match (self.preset, &self.labels) {
                (Some(Preset::Arc), None) => Some(t.column(pl.unwrap_or("choices.label"))?),
                _ => optional(&self.labels, pl)?,
            },
            answer,
            answer_name,
            subject: optional(&self.subject, ps.or(Some("subject")))?,
            id: optional(&self.id, pi.or(Some("id")))?,
            stem: t
                .path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "questions".into()),
        })
    }
}

impl Columns<'_> {
    /// The id of row `i` (the id column's text, else `<file stem>:<row>`).
    pub(crate) fn id(&self, i: usize) -> Option<String> {
        match self.id {
            Some(c) => c[i].text().map(|s| s.into_owned()),
            None => Some(format!("{}:{}", self.stem, i + 1)),
        }
    }

    /// The question of row `i`.
    pub(crate) fn question(&self, i: usize, format: AnswerFormat) -> RowQuestion {
        let id = self.id(i).ok_or("no id")?;
        let text = self.question[i]
            .text()
            .map(|s| s.into_owned())
            .filter(|s| !s.trim().is_empty())
            .ok_or("no question text")?;
        let options: Vec<String> = match &self.options {
            None => vec![],
            Some(cols) if self.options_list => cols[0]
                .get(i)
                .and_then(Cell::text_list)
                .ok_or("the options are not a list")?,
            Some(cols) => cols
                .iter()
                .map(|c| c[i].text().map(|s| s.into_owned()))
                .collect::<Option<Vec<_>>>()
                .ok_or("an option is missing")?,
        };
        if self.options.is_some() && (options.len() < 2 || options.len() > N_LETTERS) {
            return Err(format!(
                "{} options (rgd takes 2 to {N_LETTERS})",
                options.len()
            ));
        }
        let answer = match self.answer.map(|c| &c[i]) {
            // a response matrix's question may come without a key: query-only routers and
            // labelers learn from it, and the key-reading ones are refused before training
            None | Some(Cell::Null) if self.options.is_none() || !self.answer_required => None,
            None | Some(Cell::Null) => return Err(format!("no `{}`", self.answer_name)),
            Some(cell) => {
                let labels = self.labels.and_then(|l| l[i].text_list());
                Some(
                    resolve_answer(cell, &options, labels.as_deref(), format)
                        .map_err(|e| format!("answer {e}"))?,
                )
            }
        };
        let subject = self
            .subject
            .and_then(|c| c[i].text().map(|s| s.into_owned()))
            .unwrap_or_else(|| {
                // a question file is often one subject; a response matrix's train and test
                // files are not (their stems would make no training subject match a test one)
                if self.answer_required {
                    self.stem.clone()
                } else {
                    "all".to_string()
                }
            });
        Ok(Question {
            id,
            subject,
            text,
            options,
            answer,
            source: None,
        })
    }
}

/// The option `cell` names among `options` (with `labels` when the file labels its options).
pub(crate) fn resolve_answer(
    cell: &Cell,
    options: &[String],
    labels: Option<&[String]>,
    format: AnswerFormat,
) -> Result<Letter, String> {
    let names_none = || {
        format!(
            "{} names no option",
            cell.text().unwrap_or_else(|| "(a list)".into())
        )
    };
    let text = cell.text().ok_or_else(names_none)?;
    let t = text.trim();
    let in_range = |i: usize| (i < options.len() || options.is_empty()).then_some(i);
    let index = |base: usize| -> Option<usize> {
        let x = cell.number()?;
        (x.fract() == 0.0 && x >= base as f64).then(|| x as usize - base)
    };
    let i = match format {
        AnswerFormat::Letter => Letter::parse(t).map(Letter::index),
        AnswerFormat::Index => index(0),
        AnswerFormat::Index1 => index(1),
        AnswerFormat::Text => options.iter().position(|o| o.trim() == t),
        AnswerFormat::Auto => {
            if let Some(l) = labels {
                l.iter().position(|x| x.trim() == t)
            } else if let Some(l) = Letter::parse(t).filter(|_| t.len() <= 4) {
                Some(l.index())
            } else {
                let by_text = options.iter().position(|o| o.trim() == t);
                let by_index = index(0).and_then(in_range);
                match (by_text, by_index) {
                    // written as text, it may be the option's text or its 0-based index, and
                    // the two name different options: refuse to guess
                    (Some(p), Some(i)) if p != i && matches!(cell, Cell::Text(_)) => {
                        return Err(format!(
                            "`{t}` is the text of option {} and the 0-based index of option {}; say which with `answer_format` (`target_format` for lm-eval logs): `text` or `index`",
                            Letter::from_index(p).map_or("?".into(), |l| l.to_string()),
                            Letter::from_index(i).map_or("?".into(), |l| l.to_string()),
                        ));
                    }
                    // a typed number is an index
                    (_, Some(i)) => Some(i),
                    (p, None) => p,
                }
            }
        }
    };
    i.and_then(in_range)
        .and_then(Letter::from_index)
        .ok_or_else(names_none)
}

/// Read every question of `t`; rows that cannot be read are skipped with their reason; an id
/// seen twice is an error naming both places.
pub(crate) fn read_questions(
    t: &Table,
    mapping: &Mapping,
    need_options: bool,
) -> Result<(Vec<(usize, Question)>, Skipped), FileError> {
    let cols = mapping.columns(t, need_options)?;
    let mut out = Vec::with_capacity(t.n_rows);
    let mut skipped = Skipped::new(&t.path);
    let mut seen: HashMap<String, usize> = HashMap::with_capacity(t.n_rows);
    for i in 0..t.n_rows {
        match cols.question(i, mapping.answer_format) {
            Ok(q) => {
                if let Some(&first) = seen.get(&q.id) {
                    return Err(FileError::Duplicate {
                        path: t.path.clone(),
                        id: q.id,
                        first: t.at(first),
                        second: t.at(i),
                    });
                }
                seen.insert(q.id.clone(), i);
                out.push((i, q));
            }
            Err(why) => skipped.add(t.at(i), why),
        }
    }
    Ok((out, skipped))
}

/// Multiple-choice questions from a JSONL, CSV/TSV or Parquet file, mapped by column names
/// (or a preset), sampled per subject with disjoint `heldout`/`main` parts like `benchmark`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QuestionFile {
    /// The file (relative to the pipeline's folder).
    pub path: PathBuf,
    /// Its format (default: from the extension).
    #[serde(default)]
    pub format: Option<Format>,
    /// A preset for the column names (`mmlu`, `arc`).
    #[serde(default)]
    pub preset: Option<Preset>,
    /// The question text's column (default `question`).
    #[serde(default)]
    pub question: Option<String>,
    /// The options: a list column (default `options`), or a column per option.
    #[serde(default)]
    pub options: Option<Options>,
    /// A list column of option labels the answer may name.
    #[serde(default)]
    pub labels: Option<String>,
    /// The answer's column (default `answer`).
    #[serde(default)]
    pub answer: Option<String>,
    /// How the answer names the option.
    #[serde(default)]
    pub answer_format: AnswerFormat,
    /// The subject's column (default `subject` when present; else the file's name).
    #[serde(default)]
    pub subject: Option<String>,
    /// The id's column (default `id` when present; else the row number).
    #[serde(default)]
    pub id: Option<String>,
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
}

impl QuestionFile {
    fn mapping(&self) -> Mapping {
        Mapping {
            preset: self.preset,
            question: self.question.clone(),
            options: self.options.clone(),
            labels: self.labels.clone(),
            answer: self.answer.clone(),
            answer_format: self.answer_format,
            subject: self.subject.clone(),
            id: self.id.clone(),
        }
    }

    /// Read and sample the questions; the rows skipped, with their reasons.
    pub fn load(&self, ctx: &Context) -> Result<(Vec<Question>, Skipped), FileError> {
        let path = ctx.resolve(&self.path);
        let table = Table::read(&path, self.format)?;
        let (qs, skipped) = read_questions(&table, &self.mapping(), true)?;
        let source = format!("file {}", self.path.display());
        let qs = qs
            .into_iter()
            .map(|(_, mut q)| {
                q.source = Some(source.clone());
                q
            })
            .collect();
        let sampling = Sampling {
            per_subject: self.per_subject,
            holdout: self.holdout,
            part: self.part,
            seed: self.seed,
        };
        let qs = sampling
            .apply(qs)
            .map_err(|e| FileError::invalid(&path, e))?;
        Ok((qs, skipped))
    }
}

impl QuestionSource for QuestionFile {
    fn questions(&self, ctx: &Context) -> rgd_core::Result<Vec<Question>> {
        let (qs, skipped) = self.load(ctx)?;
        skipped.warn(ctx);
        if qs.is_empty() {
            return Err(FileError::invalid(&ctx.resolve(&self.path), "no question to use").into());
        }
        Ok(qs)
    }
}

rgd_core::register!(questions, "file", QuestionFile);
