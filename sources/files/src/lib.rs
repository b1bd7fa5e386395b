//! Bring your own data: questions from JSONL, CSV/TSV or Parquet files (the `file` question
//! source), and the pool's responses from response matrices (the `responses` data source,
//! long or wide, with the `routerbench` and `embedllm` presets) or from lm-evaluation-harness
//! `--log_samples` files (the `lm_eval` data source).
//!
//! Bad input: a missing column names the file and the column and lists the columns found; a
//! row that cannot be read (an answer naming no option, a score that is not 0 or 1) is skipped
//! and counted, and the count reaches the run's warnings; a model with no row for a question
//! abstains there, counted; an id seen twice is an error naming both places.

mod collected;
pub mod lmeval;
pub mod mmlu_pro;
pub mod questions;
pub mod responses;
pub mod synth;
pub mod table;
pub mod write;

pub use lmeval::LmEval;
pub use questions::{AnswerFormat, Mapping, Options, Preset, QuestionFile};
pub use responses::{Layout, MatrixPreset, ResponseMatrix};
pub use table::{Cell, Format, Table};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Errors of this crate; each names the file (and the line, row or column).
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The file's content is malformed.
    #[error("{}, {at}: {msg}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// Where (`line 3`, `row 7`, `file`).
        at: String,
        /// What is wrong.
        msg: String,
    },
    /// A column the mapping names is not in the file.
    #[error("{}: no column `{column}` (the file's columns: {found})", path.display())]
    MissingColumn {
        /// The file.
        path: PathBuf,
        /// The column asked for.
        column: String,
        /// The columns there are.
        found: String,
    },
    /// An id appears twice.
    #[error("{}: id `{id}` appears twice, at {first} and at {second}", path.display())]
    Duplicate {
        /// The file.
        path: PathBuf,
        /// The id.
        id: String,
        /// Its first place.
        first: String,
        /// Its second place.
        second: String,
    },
    /// The settings or the data do not fit together.
    #[error("{}: {msg}", path.display())]
    Invalid {
        /// The file (or the folder) concerned.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
}

impl FileError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        FileError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
    pub(crate) fn invalid(path: &Path, msg: impl Into<String>) -> Self {
        FileError::Invalid {
            path: path.to_path_buf(),
            msg: msg.into(),
        }
    }
    pub(crate) fn csv(path: &Path, e: csv::Error) -> Self {
        let at = e
            .position()
            .map(|p| format!("line {}", p.line()))
            .unwrap_or_else(|| "file".into());
        match e.into_kind() {
            csv::ErrorKind::Io(source) => FileError::io(path, source),
            kind => FileError::Parse {
                path: path.to_path_buf(),
                at,
                msg: format!("{kind:?}"),
            },
        }
    }
}

impl From<FileError> for rgd_core::Error {
    fn from(e: FileError) -> Self {
        rgd_core::Error::Data(e.to_string())
    }
}

/// Rows skipped while reading one file, counted by reason (with the first place of each).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Skipped {
    /// The file.
    pub path: PathBuf,
    /// Reason -> (count, first place).
    pub reasons: BTreeMap<String, (usize, String)>,
}

impl Skipped {
    pub(crate) fn new(path: &Path) -> Self {
        Skipped {
            path: path.to_path_buf(),
            reasons: BTreeMap::new(),
        }
    }
    pub(crate) fn add(&mut self, at: String, why: impl Into<String>) {
        self.reasons
            .entry(why.into())
            .and_modify(|e| e.0 += 1)
            .or_insert((1, at));
    }
    /// How many rows were skipped.
    pub fn total(&self) -> usize {
        self.reasons.values().map(|(n, _)| n).sum()
    }
    /// One line for the run's warnings, if anything was counted: `what` says what the count
    /// is (`row(s) skipped`).
    pub fn line(&self, what: &str) -> Option<String> {
        (self.total() > 0).then(|| {
            format!(
                "{}: {} {what} ({})",
                self.path.display(),
                self.total(),
                self.reasons
                    .iter()
                    .map(|(why, (n, at))| format!("{n} x {why}, first at {at}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        })
    }
    /// Say the line as a run warning.
    pub fn warn(&self, ctx: &rgd_core::Context) {
        if let Some(l) = self.line("row(s) skipped") {
            ctx.warn(l);
        }
    }
}
