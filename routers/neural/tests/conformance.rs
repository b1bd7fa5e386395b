//! Every router of this crate passes the testkit's conformance check.
use rgd_router_neural as _;
use rgd_testkit::{builtin, check_router};

#[test]
fn mlp() {
    check_router(&builtin(), "type = \"mlp\"").unwrap();
}

#[test]
fn mf() {
    check_router(&builtin(), "type = \"mf\"").unwrap();
}

#[test]
fn ranker() {
    check_router(&builtin(), "type = \"ranker\"").unwrap();
}
