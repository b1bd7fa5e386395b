// The router every library of this crate declares; included by the library and its examples
// (each is its own cdylib, so they cannot share it as a crate).

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
