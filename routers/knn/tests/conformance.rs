//! Every router of this crate passes the testkit's conformance check.
use rgd_router_knn as _;
use rgd_testkit::{builtin, check_router};

#[test]
fn knn() {
    check_router(&builtin(), "type = \"knn\"").unwrap();
}

#[test]
fn consensus_knn() {
    check_router(&builtin(), "type = \"consensus_knn\"").unwrap();
}
