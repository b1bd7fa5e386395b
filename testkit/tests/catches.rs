//! The kit catches a router that returns NaN, scores the wrong shape, ignores its seed, or
//! accepts an edited artifact; a well-behaved router passes.

use ndarray::Array2;
use rgd_core::{Context, Query, Registry, Router, Split, TrainedRouter};
use std::sync::atomic::{AtomicU64, Ordering};

/// A router with a chosen fault, for the kit's own tests.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Faulty {
    /// `none`, `nan`, `shape`, `unseeded` or `lax` (accepts any artifact).
    fault: String,
}

/// The faulty router's trained state.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct FaultyTrained {
    models: Vec<String>,
    weights: Vec<f64>,
    fault: String,
    offset: f64,
}

static TRAININGS: AtomicU64 = AtomicU64::new(0);

impl Router for Faulty {
    fn train(
        &self,
        _t: &Split,
        models: &[String],
        _c: &Context,
    ) -> rgd_core::Result<Box<dyn TrainedRouter>> {
        // the unseeded router draws its state from something other than its seed
        let offset = match self.fault.as_str() {
            "unseeded" => TRAININGS.fetch_add(1, Ordering::Relaxed) as f64,
            _ => 0.0,
        };
        Ok(Box::new(FaultyTrained {
            models: models.to_vec(),
            weights: (0..models.len()).map(|m| m as f64).collect(),
            fault: self.fault.clone(),
            offset,
        }))
    }
}

#[typetag::serde(name = "testkit_faulty")]
impl TrainedRouter for FaultyTrained {
    fn models(&self) -> &[String] {
        &self.models
    }
    fn score(&self, q: &Query<'_>, out: &mut [f64]) -> rgd_core::Result<()> {
        // one score per stored weight: an edited pool is out of step with them
        for (m, w) in self.weights.iter().enumerate() {
            out[m] = match self.fault.as_str() {
                "nan" => f64::NAN,
                _ => w * q.embedding[m % q.embedding.len()] as f64 + self.offset,
            };
        }
        Ok(())
    }
    fn score_split(&self, split: &Split) -> rgd_core::Result<Array2<f64>> {
        let s = rgd_core::score_each(self, split)?;
        Ok(match self.fault.as_str() {
            "shape" => s.t().to_owned(),
            _ => s,
        })
    }
    fn validate(&self) -> rgd_core::Result<()> {
        if self.fault == "lax" {
            return Ok(());
        }
        rgd_core::artifact::models(&self.models)?;
        rgd_core::artifact::len(
            "weights",
            self.weights.len(),
            self.models.len(),
            "one per model",
        )
    }
}

rgd_core::register!(router, "testkit_faulty", Faulty);

fn check(fault: &str) -> Result<(), rgd_testkit::Failure> {
    rgd_testkit::check_router(
        &Registry::builtin().unwrap(),
        &format!("type = \"testkit_faulty\"\nfault = \"{fault}\""),
    )
}

#[test]
fn a_well_behaved_router_passes() {
    check("none").unwrap();
}

#[test]
fn nan_scores_are_caught() {
    let e = check("nan").unwrap_err();
    assert_eq!(e.check, "finite scores of the right shape", "{e}");
    assert!(e.msg.contains("NaN"), "{e}");
}

#[test]
fn the_wrong_shape_is_caught() {
    let e = check("shape").unwrap_err();
    assert_eq!(e.check, "finite scores of the right shape", "{e}");
}

#[test]
fn a_router_that_ignores_its_seed_is_caught() {
    let e = check("unseeded").unwrap_err();
    assert_eq!(e.check, "deterministic under its seed", "{e}");
}

#[test]
fn a_router_that_accepts_an_edited_artifact_is_caught() {
    let e = check("lax").unwrap_err();
    assert_eq!(e.check, "refuses an edited artifact", "{e}");
    assert!(e.msg.contains("panicked"), "{e}");
}

#[test]
fn an_unknown_type_or_an_undocumented_field_is_caught() {
    let r = Registry::builtin().unwrap();
    let e = rgd_testkit::check_router(&r, "type = \"nope\"").unwrap_err();
    assert_eq!(e.check, "registered", "{e}");
}
