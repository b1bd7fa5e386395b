//! `results.json` (the contract other tools read) and `report.md`.

use rgd_core::eval::{Accuracy, ReferenceScores};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Calls to pool models per query of each decision rule.
#[derive(Clone, Debug, Serialize)]
pub struct Calls {
    /// Top-1 asks one model.
    pub top1: usize,
    /// The top-3 vote asks three (or the whole pool if smaller).
    pub top3_vote: usize,
}

/// A router retrained with several seeds.
#[derive(Clone, Debug, Serialize)]
pub struct OverSeeds {
    /// The seeds.
    pub seeds: Vec<u64>,
    /// Top-1 per seed.
    pub top1: Vec<f64>,
    /// Mean top-1.
    pub top1_mean: f64,
    /// Sample sd of top-1.
    pub top1_sd: f64,
    /// Mean top-3 vote.
    pub top3_vote_mean: f64,
    /// Sample sd of the top-3 vote.
    pub top3_vote_sd: f64,
}

/// 95% intervals of the two accuracies.
#[derive(Clone, Debug, Serialize)]
pub struct Ci95 {
    /// Top-1.
    pub top1: [f64; 2],
    /// Top-3 vote.
    pub top3_vote: [f64; 2],
}

/// Share of the gap between best single model and oracle a router closes.
#[derive(Clone, Debug, Serialize)]
pub struct GapClosed {
    /// For top-1 (None when oracle = best single).
    pub top1: Option<f64>,
    /// For the top-3 vote.
    pub top3_vote: Option<f64>,
}

/// One router's outcome.
#[derive(Clone, Debug, Serialize)]
pub struct RouterResult {
    /// Its `type`.
    #[serde(rename = "type")]
    pub type_name: String,
    /// What it learned from.
    pub supervision: rgd_core::Supervision,
    /// Top-1 accuracy on the test split.
    pub top1: f64,
    /// Top-3 vote accuracy.
    pub top3_vote: f64,
    /// 95% bootstrap intervals over test questions (1,000 resamples, seeded).
    pub ci95: Ci95,
    /// Calls per query.
    pub calls_per_query: Calls,
    /// Share of the oracle gap closed.
    pub oracle_gap_closed: GapClosed,
    /// Training and routing seconds.
    pub seconds: BTreeMap<String, f64>,
    /// Per subject accuracies.
    pub per_subject: BTreeMap<String, Accuracy>,
    /// Share of queries on which each model ranks first.
    pub top1_share: BTreeMap<String, f64>,
    /// Where the trained artifact was written.
    pub artifact: Option<String>,
    /// Mean and sd over `training_seeds` (routers with a `seed` field).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub over_seeds: Option<OverSeeds>,
    /// AIQ of its cost–quality curve (with `[costs]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aiq: Option<f64>,
    /// Its cost–quality curve, `[cost, accuracy]` per swept parameter (with `[costs]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub curve: Option<Vec<[f64; 2]>>,
    /// Calibrated points and the rest of the cost analysis (with `[costs]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<crate::costs::CurveDetail>,
}

/// A router that failed, with why.
#[derive(Clone, Debug, Serialize)]
pub struct RouterFailure {
    /// Its `type`.
    #[serde(rename = "type")]
    pub type_name: String,
    /// The error.
    pub error: String,
}

/// References (the contract's keys plus per-subject detail).
#[derive(Clone, Debug, Serialize)]
pub struct ReferencesOut {
    /// Best single model's accuracy in hindsight (on the test split).
    pub best_single: f64,
    /// Which model that is.
    pub best_single_model: String,
    /// Share of questions some model answers correctly.
    pub oracle: f64,
    /// What the oracle would be if the models' errors were independent.
    pub oracle_if_independent: f64,
    /// Expected accuracy of uniformly random routing.
    pub random: f64,
    /// Accuracy of the whole pool's plurality vote (M calls per query).
    pub majority_vote: f64,
    /// Each model's accuracy.
    pub single: BTreeMap<String, f64>,
    /// The same per subject.
    pub per_subject: BTreeMap<String, ReferenceScores>,
}

/// The whole `results.json`.
#[derive(Clone, Debug, Serialize)]
pub struct RunResults {
    /// rgd version.
    pub rgd_version: String,
    /// The pipeline file.
    pub pipeline: String,
    /// Task name.
    pub task: String,
    /// Pool models.
    pub models: Vec<String>,
    /// Training questions.
    pub n_train: usize,
    /// Test questions.
    pub n_test: usize,
    /// Routers that ran, by their table name.
    pub routers: BTreeMap<String, RouterResult>,
    /// Routers that failed.
    pub failed: BTreeMap<String, RouterFailure>,
    /// Reference points.
    pub references: ReferencesOut,
    /// Seconds spent loading the data.
    pub load_seconds: f64,
    /// Every router on every training source (with `[sources.NAME]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sources: Option<crate::sources::SourcesOut>,
    /// Every router without each ablated filter (with `ablate_filters`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter_ablation: Option<crate::ablation::AblationOut>,
    /// Training data: generation, diagnostics and filters.
    pub training_data: crate::training::TrainingData,
    /// The cost–quality analysis (with `[costs]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub costs: Option<crate::costs::CostsOut>,
    /// Model calls of the data stage (when a pool answered through the cache).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calls: Option<Calls2>,
    /// Pool calls that failed (abstentions), per split and model: how many and the first
    /// reason. A rerun retries them (failures are not cached).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub call_failures: BTreeMap<String, BTreeMap<String, (usize, String)>>,
}

/// Call statistics of the data stage.
#[derive(Clone, Debug, Serialize)]
pub struct Calls2 {
    /// The cache file.
    pub cache: String,
    /// Calls served from the cache.
    pub cache_hits: u64,
    /// Calls that ran a model.
    pub model_calls: u64,
}

fn pct(x: f64) -> String {
    // + 0.0 turns -0.0 into 0.0
    format!("{:.1}", 100.0 * x + 0.0)
}

fn opt_pct(x: Option<f64>) -> String {
    x.map(pct).unwrap_or_else(|| "–".into())
}

/// Render `report.md`; `order` lists router names in pipeline order.
pub fn report(r: &RunResults, order: &[String]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# rgd report: {}\n", r.task);
    let _ = writeln!(
        s,
        "Pipeline `{}`; {} training questions, {} test questions; pool: {}.\n",
        r.pipeline,
        r.n_train,
        r.n_test,
        r.models.join(", ")
    );
    if !r.call_failures.is_empty() {
        let _ = writeln!(
            s,
            "## Failed model calls\n\nThese questions count as abstentions of the model; the calls were not cached, so running again retries them.\n\n| split | model | failed calls | first reason |\n|---|---|---:|---|"
        );
        for (split, per) in &r.call_failures {
            for (model, (n, why)) in per {
                let why = why.replace('|', "\\|").replace('\n', " ");
                let _ = writeln!(s, "| {split} | {model} | {n} | {why} |");
            }
        }
        let _ = writeln!(s);
    }
    let refs = &r.references;
    let _ = writeln!(s, "## Routers (test split, accuracy %)\n");
    let _ = writeln!(
        s,
        "| router | type | learns from | top-1 [95% CI] | top-3 vote [95% CI] | oracle gap closed (top-1 / top-3) | calls/query (top-1 / top-3) | train s | route s |"
    );
    let _ = writeln!(s, "|---|---|---|---:|---:|---:|---:|---:|---:|");
    for name in order {
        if let Some(x) = r.routers.get(name) {
            let _ = writeln!(
                s,
                "| {name} | {} | {} | {} [{}, {}] | {} [{}, {}] | {} / {} | {} / {} | {:.3} | {:.3} |",
                x.type_name,
                x.supervision.label(),
                pct(x.top1),
                pct(x.ci95.top1[0]),
                pct(x.ci95.top1[1]),
                pct(x.top3_vote),
                pct(x.ci95.top3_vote[0]),
                pct(x.ci95.top3_vote[1]),
                opt_pct(x.oracle_gap_closed.top1),
                opt_pct(x.oracle_gap_closed.top3_vote),
                x.calls_per_query.top1,
                x.calls_per_query.top3_vote,
                x.seconds.get("train").copied().unwrap_or(0.0),
                x.seconds.get("route").copied().unwrap_or(0.0),
            );
        } else if let Some(f) = r.failed.get(name) {
            let _ = writeln!(
                s,
                "| {name} | {} | – | failed | failed | – | – | – | – |",
                f.type_name
            );
        }
    }
    let seeded: Vec<(&String, &OverSeeds)> = order
        .iter()
        .filter_map(|n| {
            r.routers
                .get(n)
                .and_then(|x| x.over_seeds.as_ref())
                .map(|o| (n, o))
        })
        .collect();
    if let Some((_, first)) = seeded.first() {
        let _ = writeln!(
            s,
            "\nOver training seeds {:?} (routers with a `seed`; mean ± sd, %):\n\n| router | top-1 | top-3 vote |\n|---|---:|---:|",
            first.seeds
        );
        for (n, o) in &seeded {
            let _ = writeln!(
                s,
                "| {n} | {} ± {} | {} ± {} |",
                pct(o.top1_mean),
                pct(o.top1_sd),
                pct(o.top3_vote_mean),
                pct(o.top3_vote_sd)
            );
        }
    }
    if !r.failed.is_empty() {
        let _ = writeln!(s, "\nFailed routers:\n");
        for (name, f) in &r.failed {
            let _ = writeln!(s, "- `{name}`: {}", f.error.replace('\n', " "));
        }
    }
    let _ = writeln!(s, "\n## References (test split, accuracy %)\n");
    let _ = writeln!(s, "| reference | accuracy |\n|---|---:|");
    let _ = writeln!(
        s,
        "| best single in hindsight ({}) | {} |",
        refs.best_single_model,
        pct(refs.best_single)
    );
    let _ = writeln!(
        s,
        "| oracle (any model right) | {} (independent errors would give {}) |",
        pct(refs.oracle),
        pct(refs.oracle_if_independent)
    );
    let _ = writeln!(s, "| random routing (expected) | {} |", pct(refs.random));
    let _ = writeln!(
        s,
        "| majority vote of the whole pool ({} calls/query) | {} |",
        r.models.len(),
        pct(refs.majority_vote)
    );
    for (m, a) in &refs.single {
        let _ = writeln!(s, "| single: {m} | {} |", pct(*a));
    }
    if let Some(src) = &r.sources {
        sources_section(&mut s, src, order);
    }
    if let Some(a) = &r.filter_ablation {
        ablation_section(&mut s, a, order);
    }
    training_section(&mut s, "Training data", &r.training_data);
    if let Some(src) = &r.sources {
        for (name, t) in &src.training_data {
            training_section(&mut s, &format!("Training data of source `{name}`"), t);
        }
    }
    if let Some(c) = &r.costs {
        cost_section(&mut s, r, c, order);
    }
    let _ = writeln!(s, "\n## Per subject (top-1 accuracy %)\n");
    let mut head = String::from("| subject | n |");
    let mut rule = String::from("|---|---:|");
    for name in order.iter().filter(|n| r.routers.contains_key(*n)) {
        let _ = write!(head, " {name} |");
        rule.push_str("---:|");
    }
    head.push_str(" best model in hindsight | oracle |");
    rule.push_str("---:|---:|");
    let _ = writeln!(s, "{head}\n{rule}");
    for (subj, rs) in &refs.per_subject {
        let _ = write!(s, "| {subj} | {} |", rs.n);
        for name in order.iter().filter(|n| r.routers.contains_key(*n)) {
            let a = r.routers[name]
                .per_subject
                .get(subj)
                .map(|a| pct(a.top1))
                .unwrap_or_else(|| "–".into());
            let _ = write!(s, " {a} |");
        }
        let _ = writeln!(
            s,
            " {} ({}) | {} |",
            pct(rs.best_single),
            rs.best_single_model,
            pct(rs.oracle)
        );
    }
    s
}

fn num(x: f64) -> String {
    if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

fn opt_num(x: Option<f64>) -> String {
    x.map(num).unwrap_or_else(|| "never".into())
}

fn cost_section(s: &mut String, r: &RunResults, c: &crate::costs::CostsOut, order: &[String]) {
    let u = &c.unit;
    let _ = writeln!(s, "\n## Cost and quality (test split)\n");
    let _ = writeln!(
        s,
        "![cost–quality](cost_quality.svg)\n\nCosts per query ({u}): {}. Rule: {}; AIQ is the area under each curve's non-decreasing convex hull over the single models' cost range ({} to {} {u}), divided by its width. The best single model is {} ({} %, {} {u}/query). Operating points are calibrated on the training split only.\n",
        c.per_model
            .iter()
            .map(|(m, x)| format!("{m} {} ({})", num(x.cost), x.source))
            .collect::<Vec<_>>()
            .join(", "),
        match c.rule {
            rgd_core::cost::Rule::Penalty => "pick the model maximizing score - lambda x cost",
            rgd_core::cost::Rule::Within =>
                "pick the cheapest model within delta of the best score",
        },
        num(c.cost_range[0]),
        num(c.cost_range[1]),
        c.best_single.0,
        pct(c.best_single.1[1]),
        num(c.best_single.1[0]),
    );
    let _ = writeln!(
        s,
        "| router | AIQ | calibrated to | test cost | test accuracy | cost saved vs best single | accuracy change (points) | cost to reach 95% / 100% of best single | top-3 vote cost / accuracy |"
    );
    let _ = writeln!(s, "|---|---:|---|---:|---:|---:|---:|---:|---:|");
    let mut row = |name: &str, aiq: f64, d: &crate::costs::CurveDetail| {
        let t3 = d
            .top3_vote
            .map(|p| format!("{} / {}", num(p[0]), pct(p[1])))
            .unwrap_or_else(|| "–".into());
        let reach = format!(
            "{} / {}",
            opt_num(d.cost_to_reach.get("95%").copied().flatten()),
            opt_num(d.cost_to_reach.get("100%").copied().flatten())
        );
        if d.calibrated.is_empty() {
            let _ = writeln!(
                s,
                "| {name} | {aiq:.3} | (no target met) | – | – | – | – | {reach} | {t3} |"
            );
        }
        for k in &d.calibrated {
            let _ = writeln!(
                s,
                "| {name} | {aiq:.3} | {}{} | {} | {} | {} % | {:+.1} | {reach} | {t3} |",
                k.target,
                if k.reached {
                    ""
                } else {
                    " (not reached on training data: closest setting)"
                },
                num(k.test_cost),
                pct(k.test_accuracy),
                pct(k.cost_saving),
                100.0 * k.accuracy_change,
            );
        }
    };
    for name in order {
        if let Some(x) = r.routers.get(name)
            && let (Some(aiq), Some(d)) = (x.aiq, &x.cost)
        {
            row(name, aiq, d);
        }
    }
    row(
        &format!("cascade ({})", c.cascade.0.join(" > ")),
        c.cascade.1.aiq,
        &c.cascade.1.detail,
    );
    let _ = writeln!(
        s,
        "| zero router (hull of single models) | {:.3} | – | – | – | – | – | – | – |",
        c.zero_router.0
    );
    let _ = writeln!(
        s,
        "\nOracle: {} % at {} {u}/query (the cheapest right model per question); independent errors would give {} %.",
        pct(c.oracle.accuracy),
        num(c.oracle.cost),
        pct(c.oracle.oracle_if_independent)
    );
    let budgets: Vec<f64> = r
        .routers
        .values()
        .filter_map(|x| x.cost.as_ref())
        .flat_map(|d| d.accuracy_at_budget.iter().map(|b| b.0))
        .collect();
    if !budgets.is_empty() {
        let mut uniq = budgets.clone();
        uniq.sort_by(f64::total_cmp);
        uniq.dedup();
        let _ = writeln!(s, "\nBest test accuracy (%) within a budget ({u}/query):\n");
        let mut head = String::from("| router |");
        let mut rule = String::from("|---|");
        for b in &uniq {
            let _ = write!(head, " {} |", num(*b));
            rule.push_str("---:|");
        }
        let _ = writeln!(s, "{head}\n{rule}");
        let mut line = |name: &str, d: &crate::costs::CurveDetail| {
            let _ = write!(s, "| {name} |");
            for b in &uniq {
                let a = d
                    .accuracy_at_budget
                    .iter()
                    .find(|x| x.0 == *b)
                    .and_then(|x| x.1);
                let _ = write!(s, " {} |", a.map(pct).unwrap_or_else(|| "–".into()));
            }
            let _ = writeln!(s);
        };
        for name in order {
            if let Some(d) = r.routers.get(name).and_then(|x| x.cost.as_ref()) {
                line(name, d);
            }
        }
        line("cascade", &c.cascade.1.detail);
    }
    let _ = writeln!(s, "\nCost analysis took {:.3} s.", c.seconds);
}

fn opt_pct_dash(x: Option<f64>) -> String {
    x.map(pct).unwrap_or_else(|| "–".into())
}

fn training_section(s: &mut String, title: &str, t: &crate::training::TrainingData) {
    let _ = writeln!(s, "\n## {title}\n");
    if let Some(g) = &t.generation {
        let _ = writeln!(
            s,
            "Generated by {} from {} descriptions{}.",
            g.generator,
            g.used,
            g.descriptions_file
                .as_ref()
                .map(|f| format!(" (`{f}`)"))
                .unwrap_or_default()
        );
        if !g.unknown_subjects.is_empty() {
            let _ = writeln!(
                s,
                "\n{} described subject(s) not in the test set, skipped: {}.",
                g.unknown_subjects.len(),
                g.unknown_subjects.join(", ")
            );
        }
        if !g.undescribed_subjects.is_empty() {
            let _ = writeln!(
                s,
                "\n{} test subject(s) without a description (no training questions): {}.",
                g.undescribed_subjects.len(),
                g.undescribed_subjects.join(", ")
            );
        }
        if g.descriptions.iter().any(|d| d.derived.is_some()) {
            let _ = writeln!(
                s,
                "\n| subject | hand-written description | derived from example questions |\n|---|---|---|"
            );
            for d in &g.descriptions {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} |",
                    d.subject,
                    d.hand_written.as_deref().unwrap_or("–").replace('|', "/"),
                    d.derived.as_deref().unwrap_or("–").replace('|', "/")
                );
            }
        }
        let _ = writeln!(s);
    }
    let d = &t.diagnostics;
    let _ = writeln!(
        s,
        "Diagnostics of the {} training questions before filters (accuracy against their key, %):\n",
        t.n_before_filters
    );
    let _ = writeln!(
        s,
        "| subject | n | blocks parsed / found | replies without blocks | self-answer accuracy | pool accuracy min–max (sd) | pool disagrees | near-duplicates |\n|---|---:|---:|---:|---:|---:|---:|---:|"
    );
    let mut row = |name: &str, g: &rgd_filters::diagnostics::GroupDiagnostics| {
        let (mn, mx) = g
            .model_accuracy
            .values()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
                (a.min(x), b.max(x))
            });
        let parse = g
            .parse
            .as_ref()
            .map(|p| {
                format!(
                    "{} / {} ({} % failed)",
                    p.parsed,
                    p.blocks,
                    pct(p.failure_rate)
                )
            })
            .unwrap_or_else(|| "–".into());
        let nob = g
            .parse
            .as_ref()
            .map(|p| format!("{} of {}", p.replies_without_blocks, p.calls))
            .unwrap_or_else(|| "–".into());
        let acc = if g.model_accuracy.is_empty() || g.n == 0 {
            "–".to_string()
        } else {
            format!("{}–{} ({})", pct(mn), pct(mx), pct(g.accuracy_sd))
        };
        let _ = writeln!(
            s,
            "| {name} | {} | {parse} | {nob} | {} | {acc} | {} | {} |",
            g.n,
            opt_pct_dash(g.self_answer_accuracy),
            pct(g.disagreement_share),
            pct(g.near_duplicate_rate)
        );
    };
    row("**all**", &d.overall);
    for (subj, g) in &d.per_subject {
        row(subj, g);
    }
    let _ = writeln!(
        s,
        "\nPer model (accuracy against the key, all subjects): {}.",
        d.overall
            .model_accuracy
            .iter()
            .map(|(m, a)| format!("{m} {}", pct(*a)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if !t.filters.is_empty() {
        let _ = writeln!(
            s,
            "\n| filter | type | before | after | removed (why) |\n|---|---|---:|---:|---|"
        );
        for f in &t.filters {
            let why = f
                .removed
                .iter()
                .map(|(k, v)| format!("{v} {k}"))
                .collect::<Vec<_>>()
                .join("; ");
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} |",
                f.name,
                f.type_name,
                f.before,
                f.after,
                if why.is_empty() { "–".into() } else { why }
            );
        }
    }
}

fn sources_section(s: &mut String, src: &crate::sources::SourcesOut, order: &[String]) {
    type Metric = fn(&crate::sources::SourceCell) -> (f64, [f64; 2]);
    let metrics: [(&str, Metric); 2] = [
        ("top-1", |c| (c.top1, c.top1_ci95)),
        ("top-3 vote", |c| (c.top3_vote, c.top3_vote_ci95)),
    ];
    for (label, metric) in metrics {
        let _ = writeln!(
            s,
            "\n## Training sources: {label} % on the same test split [95% CI]{}\n",
            src.reference
                .as_ref()
                .map(|r| format!(" (change from `{r}` in points)"))
                .unwrap_or_default()
        );
        let mut head = String::from("| router |");
        let mut rule = String::from("|---|");
        for o in &src.order {
            let _ = write!(
                head,
                " {o} ({} questions) |",
                src.n_train.get(o).copied().unwrap_or(0)
            );
            rule.push_str("---:|");
        }
        let _ = writeln!(s, "{head}\n{rule}");
        for name in order {
            let Some(cells) = src.results.get(name) else {
                continue;
            };
            let _ = write!(s, "| {name} |");
            let base = src
                .reference
                .as_ref()
                .and_then(|r| cells.get(r))
                .map(|c| metric(c).0);
            for o in &src.order {
                match cells.get(o) {
                    Some(c) => {
                        let (v, ci) = metric(c);
                        let d = match (base, &src.reference) {
                            (Some(b), Some(r)) if r != o => format!(" ({:+.1})", 100.0 * (v - b)),
                            _ => String::new(),
                        };
                        let _ = write!(s, " {} [{}, {}]{d} |", pct(v), pct(ci[0]), pct(ci[1]));
                    }
                    None => {
                        let why = src
                            .failed
                            .get(name)
                            .and_then(|f| f.get(o))
                            .map(|e| format!("failed: {}", e.replace('|', "/")))
                            .unwrap_or_else(|| "–".into());
                        let _ = write!(s, " {why} |");
                    }
                }
            }
            let _ = writeln!(s);
        }
    }
}

fn ablation_section(s: &mut String, a: &crate::ablation::AblationOut, order: &[String]) {
    let _ = writeln!(
        s,
        "\n## Filter ablation: top-1 % of every router retrained without {}\n",
        a.filters
            .iter()
            .map(|f| format!("`{f}`"))
            .collect::<Vec<_>>()
            .join(" / ")
    );
    for (source, n) in &a.n_train {
        let _ = writeln!(s, "Source `{source}`:\n");
        let mut head = String::from("| router |");
        let mut rule = String::from("|---|");
        for v in &a.variants {
            match n.get(v) {
                Some(k) => {
                    let _ = write!(head, " {v} ({k} q) |");
                }
                None => {
                    let _ = write!(head, " {v} |");
                }
            }
            rule.push_str("---:|");
        }
        let _ = writeln!(s, "{head}\n{rule}");
        for name in order {
            let Some(cells) = a.top1.get(name).and_then(|m| m.get(source)) else {
                continue;
            };
            let _ = write!(s, "| {name} |");
            for v in &a.variants {
                let _ = write!(
                    s,
                    " {} |",
                    cells.get(v).map(|x| pct(*x)).unwrap_or("–".into())
                );
            }
            let _ = writeln!(s);
        }
        if let Some(f) = a.failed.get(source) {
            for (v, e) in f {
                let _ = writeln!(s, "\n{v}: {e}");
            }
        }
        let _ = writeln!(s);
    }
}
