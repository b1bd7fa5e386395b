//! The benchmark question source passes the testkit's conformance check (model tier: it reads
//! the benchmark packages that `rgd assets fetch` installs).
use rgd_benchmarks as _;
use rgd_testkit::{builtin, check_questions};

#[test]
#[cfg_attr(
    not(feature = "model-tests"),
    ignore = "model tier: needs model or benchmark files (scripts/test.sh fetches them)"
)]
fn benchmark() {
    for name in ["mmlu", "sciq"] {
        let t = format!("type = \"benchmark\"\nname = \"{name}\"\nper_subject = 5\nseed = 1");
        let qs = check_questions(&builtin(), &t, std::path::Path::new(".")).unwrap();
        assert!(!qs.is_empty(), "{name}");
    }
}
