//! A plugin library whose declaration names the next plugin ABI version and is otherwise
//! right: the host must refuse it before calling anything in it. Built as an example
//! (`cargo build -p rgd-test-plugin-other-version --example other_abi`), so that each
//! mismatch is its own library.

include!("../src/never_runs.rs");

rgd_core::export_plugin!(@declare rgd_core::plugin::ABI_VERSION + 1, rgd_core::plugin::RUSTC_VERSION, rgd_core::plugin::CORE_VERSION; router "never_runs" => NeverRuns);
