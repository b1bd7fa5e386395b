//! A plugin library whose declaration names rgd-core `0.0.0-other`: the host must refuse it
//! before calling anything in it (its router must never run).

use rgd_core::{Context, Result, Router, Split, TrainedRouter};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Never built: the library is refused at load.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NeverRuns {}

impl Router for NeverRuns {
    fn train(&self, _: &Split, _: &[String], _: &Context) -> Result<Box<dyn TrainedRouter>> {
        unreachable!("a library with another rgd-core version must not be used")
    }
}

rgd_core::export_plugin!(@versions rgd_core::plugin::RUSTC_VERSION, "0.0.0-other"; router "never_runs" => NeverRuns);
