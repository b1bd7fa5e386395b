//! BIG-bench from its PyPI sdist (the `bigbench` asset): every task with multiple-choice
//! examples is a subject. The counts were computed independently with Python's json module
//! over the same task files (2 to 20 options, one best-scored option, a non-empty input).

use rgd_benchmarks::{Benchmark, Part, load_bigbench};

#[test]
#[cfg_attr(
    not(feature = "model-tests"),
    ignore = "model tier: needs model or benchmark files (scripts/test.sh fetches them)"
)]
fn every_multiple_choice_task_is_a_subject_with_the_counts_python_finds() {
    let (qs, bad, names) = load_bigbench(&|_| true).unwrap();
    assert_eq!(names.len(), 167);
    let mut subjects: Vec<&str> = qs.iter().map(|q| q.subject.as_str()).collect();
    subjects.dedup();
    subjects.sort();
    subjects.dedup();
    assert_eq!(subjects.len(), 90);
    assert_eq!(qs.len(), 305_812);
    assert_eq!(bad, 5_414);
    // the options are shuffled: the gold answer is not always first
    let first = qs.iter().filter(|q| q.answer.unwrap().index() == 0).count();
    assert!(first < qs.len() / 2, "{first} of {}", qs.len());
    assert!(
        qs.iter()
            .all(|q| q.answer.unwrap().index() < q.options.len())
    );
}

#[test]
#[cfg_attr(
    not(feature = "model-tests"),
    ignore = "model tier: needs model or benchmark files (scripts/test.sh fetches them)"
)]
fn subjects_sample_with_disjoint_parts_and_an_unknown_task_lists_the_known_ones() {
    let b = |part: Part, subjects: &[&str]| Benchmark {
        name: "bigbench".into(),
        subjects: subjects.iter().map(|s| s.to_string()).collect(),
        per_subject: 10,
        holdout: 0.5,
        part,
        seed: 1,
        prefix_subjects: false,
    };
    let (train, _) = b(Part::Heldout, &["navigate", "sports_understanding"])
        .select()
        .unwrap();
    let (test, _) = b(Part::Main, &["navigate", "sports_understanding"])
        .select()
        .unwrap();
    assert_eq!((train.len(), test.len()), (20, 20));
    assert!(train.iter().all(|a| test.iter().all(|t| t.id != a.id)));
    let e = b(Part::Main, &["navigat"])
        .select()
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no subject `navigat`") && e.contains("navigate"),
        "{e}"
    );
}
