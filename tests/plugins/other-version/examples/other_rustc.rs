//! A plugin library whose declaration names another rustc (`rustc 0.0.0-other`) and is otherwise
//! right: the host must refuse it before calling anything in it. Built as an example
//! (`cargo build -p rgd-test-plugin-other-version --example other_rustc`), so that each
//! mismatch is its own library.

include!("../src/never_runs.rs");

rgd_core::export_plugin!(@versions "rustc 0.0.0-other", rgd_core::plugin::CORE_VERSION; router "never_runs" => NeverRuns);
