//! A plugin library whose declaration names another rustc (`rustc 0.0.0-other`) and is otherwise
//! right: the host must refuse it before calling anything in it. Built as an example
//! (`cargo build -p rgd-test-plugin-other-version --example other_rustc`), so that each
//! mismatch is its own library.

use rgd_core::{Context, Result, Router, Split, TrainedRouter};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Never built: the library is refused at load.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NeverRuns {}

impl Router for NeverRuns {
    fn train(&self, _: &Split, _: &[String], _: &Context) -> Result<Box<dyn TrainedRouter>> {
        unreachable!("a refused library must not be used")
    }
}

rgd_core::export_plugin!(@versions "rustc 0.0.0-other", rgd_core::plugin::CORE_VERSION; router "never_runs" => NeverRuns);
