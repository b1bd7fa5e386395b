//! Test support for rgd component authors (the way uv keeps a shared test-support crate).
//!
//! - [`World`] and [`SplitBuilder`]: a [`Dataset`](rgd_core::Dataset) or
//!   [`Split`](rgd_core::Split) in a few lines, either a seeded world with skill structure
//!   (each model strong on some subjects) or rows written out by hand.
//! - [`conformance`]: the checks every built-in router, filter and data source runs with one
//!   line — trains on a tiny split without panicking, finite scores of the right shape,
//!   identical scores after a round trip through its artifact, deterministic under its seed,
//!   an edited artifact refused, an empty or one-question split a clear error or a valid
//!   router, and every config field documented for `rgd plugins`.
//!
//! ```
//! let ds = rgd_testkit::World::new().models(3).subjects(2).seed(7).dataset();
//! assert_eq!((ds.models.len(), ds.train.len()), (3, 2 * 24));
//! ```

mod build;
pub mod conformance;

pub use build::{SplitBuilder, World};
pub use conformance::{
    Failure, check_data_source, check_filter, check_labeler, check_questions, check_router,
};

/// The registry of every component linked into the test binary (`use my_crate as _;` links a
/// crate that the test does not otherwise name).
pub fn builtin() -> rgd_core::Registry {
    rgd_core::Registry::builtin().expect("the built-in registry has no duplicate type")
}
