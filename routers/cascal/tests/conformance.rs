//! Every router of this crate passes the testkit's conformance check.
use rgd_router_cascal as _;
use rgd_testkit::{builtin, check_router};

#[test]
fn cascal() {
    check_router(&builtin(), "type = \"cascal\"").unwrap();
}

#[test]
fn cascal_gt() {
    check_router(&builtin(), "type = \"cascal_gt\"").unwrap();
}
