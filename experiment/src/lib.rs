//! rgd's experiment as a library: resolve a pipeline ([`Resolved`]), load its data, train and
//! evaluate every router with one function ([`evaluate::train_and_evaluate`]), the cost
//! analysis, training sources, the filter ablation and sweeps, typed results that serialize
//! and deserialize ([`RunResults`]), and trained-router artifacts that save and load.
//! The `rgd` binary and the Python binding are front ends of this crate.
//!
//! ```no_run
//! use rgd_experiment::{Resolved, Session, run};
//! let registry = rgd_components::registry()?; // every linked built-in component
//! let resolved = Resolved::from_file(&registry, "examples/pipelines/zoo.toml".as_ref(), true)?;
//! let results = run(&resolved, &Session::default(), None)?;
//! println!("best single {:.3}", results.references.best_single);
//! # Ok::<(), rgd_experiment::Error>(())
//! ```

pub mod ablation;
pub mod agreement;
pub mod artifact;
pub mod cost;
pub mod costs;
pub mod data;
pub mod error;
pub mod evaluate;
pub mod recording;
pub mod resolve;
pub mod results;
pub mod run;
pub mod scale;
pub mod session;
pub mod sources;
pub mod sweep;
pub mod tables;
pub mod training;

pub use error::{Error, Result};
pub use resolve::{Named, Resolved};
pub use results::RunResults;
pub use run::run;
pub use session::{CacheOptions, Progress, Session, Silent};
