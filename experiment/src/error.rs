//! The one error type of `rgd-experiment`.

use std::path::PathBuf;

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in an experiment; the message names the file, table or stage.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A component, pipeline or data error from the core or a plugin.
    #[error(transparent)]
    Core(#[from] rgd_core::Error),
    /// The call cache or a recording failed.
    #[error(transparent)]
    Cache(#[from] rgd_cache::CacheError),
    /// A plugin library could not be loaded.
    #[error(transparent)]
    Dylib(#[from] rgd_dylib::DylibError),
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// A system error (its file is named by the context around it).
    #[error("{0}")]
    System(#[from] std::io::Error),
    /// A value could not be written or read as JSON or TOML.
    #[error("{0}")]
    Format(String),
    /// The experiment cannot go on; the message says why and where.
    #[error("{0}")]
    Invalid(String),
    /// An error with what was being done when it happened.
    #[error("{context}: {inner}")]
    Context {
        /// What was being done (a stage, a file, a table).
        context: String,
        /// The error.
        inner: Box<Error>,
    },
}

impl Error {
    /// An error on the file at `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Error {
        Error::Format(e.to_string())
    }
}

impl From<toml::ser::Error> for Error {
    fn from(e: toml::ser::Error) -> Error {
        Error::Format(e.to_string())
    }
}

impl From<std::fmt::Error> for Error {
    fn from(e: std::fmt::Error) -> Error {
        Error::Format(e.to_string())
    }
}

/// Add what was being done to an error (as `anyhow::Context` does, but typed).
pub trait ResultExt<T> {
    /// Prefix the error with `context`.
    fn context(self, context: impl Into<String>) -> Result<T>;
    /// Prefix the error with a lazily built context.
    fn with_context<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T>;
}

impl<T, E: Into<Error>> ResultExt<T> for std::result::Result<T, E> {
    fn context(self, context: impl Into<String>) -> Result<T> {
        self.map_err(|e| Error::Context {
            context: context.into(),
            inner: Box::new(e.into()),
        })
    }
    fn with_context<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| Error::Context {
            context: f().into(),
            inner: Box::new(e.into()),
        })
    }
}

/// Return early with an [`Error::Invalid`] built like `format!`.
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::error::Error::Invalid(format!($($arg)*)))
    };
}
pub(crate) use bail;

impl From<rgd_pool::PoolError> for Error {
    fn from(e: rgd_pool::PoolError) -> Error {
        Error::Core(e.into())
    }
}
