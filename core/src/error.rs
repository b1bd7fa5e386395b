//! The one error type of `rgd-core`; plugin crates convert theirs into it.

use std::path::PathBuf;

/// Result alias used throughout rgd.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the core and, wrapped, in a component.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The run was asked to stop (Ctrl-C); every finished model call is in the cache.
    #[error(
        "interrupted; every model call that finished is in the cache, a rerun makes only the rest"
    )]
    Interrupted,
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON file is malformed or has the wrong shape.
    #[error("{}:{line}:{column}: {msg}", path.display())]
    Json {
        /// The file concerned.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What serde_json said.
        msg: String,
    },
    /// A pipeline or component configuration is invalid (file, table, line are in `context`).
    #[error("{context}: {msg}")]
    Config {
        /// Where: file, table and line.
        context: String,
        /// What is wrong.
        msg: String,
    },
    /// No component of this kind has this `type` name.
    #[error("{context}: unknown {kind} type `{name}`; known {kind} types: {known}")]
    UnknownType {
        /// Where the type was named.
        context: String,
        /// The component kind (router, data source, ...).
        kind: String,
        /// The unknown name.
        name: String,
        /// Comma-separated list of the known names.
        known: String,
    },
    /// Two components registered the same `type` name for one kind.
    #[error("duplicate {kind} type `{name}`: registered by {first} and by {second}")]
    DuplicateType {
        /// The component kind.
        kind: String,
        /// The duplicated name.
        name: String,
        /// Origin of the first registration.
        first: String,
        /// Origin of the second registration.
        second: String,
    },
    /// A model cannot answer this input (e.g. a prompt longer than its context): the pool
    /// records an abstention and goes on, unlike other errors.
    #[error("unanswerable: {0}")]
    Unanswerable(String),
    /// A remote backend stayed unreachable or kept failing through its bounded retries: the
    /// call is counted as failed (the pool records an abstention, a generator an empty reply)
    /// and is not cached, so a rerun tries it again.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Input data is inconsistent (unknown question, wrong embedding length, NaN, ...).
    #[error("{0}")]
    Data(String),
    /// A component failed; `component` names it.
    #[error("{component}: {source}")]
    Component {
        /// The component's name (e.g. `router cascal`).
        component: String,
        /// The component's own error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    /// Whether the run should count this call as failed and go on (the model cannot answer
    /// the input, or its server stayed down through the retries) rather than stop.
    pub fn is_call_failure(&self) -> bool {
        matches!(self, Error::Unanswerable(_) | Error::Unavailable(_))
    }

    /// Wrap a component's own error, naming the component.
    pub fn component(
        component: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Error::Component {
            component: component.into(),
            source: source.into(),
        }
    }

    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// A serde_json error on `path`, keeping its line and column.
    pub fn json(path: impl Into<PathBuf>, e: serde_json::Error) -> Self {
        Error::Json {
            path: path.into(),
            line: e.line(),
            column: e.column(),
            msg: e.to_string(),
        }
    }
}

/// Convert a component crate's error enum into [`Error::Component`], naming the component:
/// `rgd_core::component_error!(KnnError, "router knn");`.
#[macro_export]
macro_rules! component_error {
    ($ty:ty, $name:expr) => {
        impl From<$ty> for $crate::Error {
            fn from(e: $ty) -> Self {
                $crate::Error::component($name, e)
            }
        }
    };
}
