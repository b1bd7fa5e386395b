//! Every router of this crate passes the testkit's conformance check.
use rgd_router_dawid_skene as _;
use rgd_testkit::{builtin, check_router};

#[test]
fn dawid_skene() {
    check_router(&builtin(), "type = \"dawid_skene\"").unwrap();
}
