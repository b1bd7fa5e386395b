//! Every filter of this crate passes the testkit's conformance check.
use rgd_filters as _;
use rgd_testkit::{builtin, check_filter};

#[test]
fn validity() {
    check_filter(&builtin(), "type = \"validity\"").unwrap();
}

#[test]
fn self_answer() {
    check_filter(&builtin(), "type = \"self_answer\"").unwrap();
}

#[test]
fn differentiation() {
    check_filter(&builtin(), "type = \"differentiation\"").unwrap();
}

#[test]
fn dedup() {
    check_filter(&builtin(), "type = \"dedup\"").unwrap();
}

#[test]
fn balance() {
    check_filter(&builtin(), "type = \"balance\"\nmax_per_subject = 10").unwrap();
}
