//! A plugin library whose declaration names rgd-core `0.0.0-other`: the host must refuse it
//! before calling anything in it (its router must never run).

include!("never_runs.rs");

rgd_core::export_plugin!(@versions rgd_core::plugin::RUSTC_VERSION, "0.0.0-other"; router "never_runs" => NeverRuns);
