//! Every labeler of this crate passes the testkit's conformance check, and every router that
//! takes labels trains with each of them.
use rgd_labelers as _;
use rgd_testkit::{builtin, check_labeler};

#[test]
fn key() {
    check_labeler(&builtin(), "type = \"key\"").unwrap();
}

#[test]
fn consensus() {
    check_labeler(&builtin(), "type = \"consensus\"").unwrap();
}

#[test]
fn plurality() {
    check_labeler(&builtin(), "type = \"plurality\"").unwrap();
}

#[test]
fn dawid_skene() {
    check_labeler(&builtin(), "type = \"dawid_skene\"\niterations = 20").unwrap();
}
