//! rgd-core: the data model, the component traits (data sources, generators, filters,
//! labelers, routers, embedders, LLM backends), the registry that finds components by their
//! TOML `type`, the pipeline spec, and evaluation.

pub mod data;
pub mod descriptions;
pub mod error;
pub mod eval;
pub mod labels;
pub mod memory;
pub mod pipeline;
pub mod plugin;
pub mod registry;
pub mod stats;
pub mod traits;

pub use data::{Dataset, Labels, Letter, N_LETTERS, Question, Responses, Split, rank};
pub use error::{Error, Result};
pub use labels::{LabelQuality, Labeler, Needs};
pub use pipeline::{BuiltPipeline, Pipeline};
pub use registry::{Component, Entry, Kind, Origin, Registry};
pub use traits::*;

#[doc(hidden)]
pub use inventory;
#[doc(hidden)]
pub use schemars;
#[doc(hidden)]
pub use typetag;
