//! A plugin that misbehaves on purpose, for the host's tests: the `panics` router panics while
//! scoring; with `RGD_FAULTY_PANIC_REGISTER` set, registration panics; with the
//! `other-version` feature, the declaration names another rgd-core version.

use rgd_core::{Context, Query, Result, Router, Split, TrainedRouter};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Trains fine, panics on every query.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Panics {}

impl Router for Panics {
    fn train(&self, _: &Split, models: &[String], _: &Context) -> Result<Box<dyn TrainedRouter>> {
        if std::env::var_os("RGD_FAULTY_PANIC_REGISTER").is_some() {
            unreachable!("registration should have failed");
        }
        Ok(Box::new(TrainedPanics {
            models: models.to_vec(),
        }))
    }
}

/// The trained [`Panics`].
#[derive(Debug, Serialize, Deserialize)]
pub struct TrainedPanics {
    models: Vec<String>,
}

#[typetag::serde(name = "faulty_panics")]
impl TrainedRouter for TrainedPanics {
    fn models(&self) -> &[String] {
        &self.models
    }
    fn score(&self, query: &Query<'_>, _out: &mut [f64]) -> Result<()> {
        panic!(
            "faulty plugin: deliberate panic while scoring `{}`",
            query.id
        )
    }
}

/// Registers fine unless `RGD_FAULTY_PANIC_REGISTER` is set (then its schema panics, which
/// happens during registration).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaybePanics {}

impl JsonSchema for MaybePanics {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "MaybePanics".into()
    }
    fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        if std::env::var_os("RGD_FAULTY_PANIC_REGISTER").is_some() {
            panic!("faulty plugin: deliberate panic during registration");
        }
        Panics::json_schema(g)
    }
}

impl Router for MaybePanics {
    fn train(&self, t: &Split, m: &[String], c: &Context) -> Result<Box<dyn TrainedRouter>> {
        Panics {}.train(t, m, c)
    }
}

rgd_core::export_plugin!(router "faulty_panics" => Panics, router "faulty_maybe" => MaybePanics);
