//! `report.md`: the results as a readable report.

use rgd_experiment::results::{OverSeeds, RunResults};
use std::fmt::Write as _;

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
    if !r.warnings.is_empty() {
        let _ = writeln!(s, "## Data warnings\n");
        for w in &r.warnings {
            let _ = writeln!(s, "- {}", w.replace('\n', " "));
        }
        let _ = writeln!(s);
    }
    let refs = &r.references;
    label_section(&mut s, r);
    let _ = writeln!(s, "## Routers (test split, accuracy %)\n");
    let _ = writeln!(
        s,
        "| router | type | learns from | top-1 [95% CI] | top-1 − best single, points [paired 95% CI] | top-3 vote [95% CI] | oracle gap closed (top-1 / top-3) | calls/query (top-1 / top-3) | train s | route s |"
    );
    let _ = writeln!(s, "|---|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for name in order {
        if let Some(x) = r.routers.get(name) {
            let _ = writeln!(
                s,
                "| {name} | {} | {} | {} [{}, {}] | {} | {} [{}, {}] | {} / {} | {} / {} | {:.3} | {:.3} |",
                x.type_name,
                learns_from(x),
                pct(x.top1),
                pct(x.ci95.top1[0]),
                pct(x.ci95.top1[1]),
                x.vs_best_single.as_ref().map_or("–".into(), |d| format!(
                    "{:+.1} [{:+.1}, {:+.1}]",
                    100.0 * d.top1,
                    100.0 * d.top1_ci95[0],
                    100.0 * d.top1_ci95[1]
                )),
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
                "| {name} | {} | – | failed | – | failed | – | – | – | – |",
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

/// What a router learned from: the supervision, and its labeler when it takes one.
fn learns_from(x: &rgd_experiment::results::RouterResult) -> String {
    match &x.labels {
        Some(l) => format!("{} (`{l}` labels)", x.supervision.label()),
        None => x.supervision.label().to_string(),
    }
}

/// How well each labeler's labels agree with the key.
fn label_section(s: &mut String, r: &RunResults) {
    if r.label_quality.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "## Labels the routers learned from, against the key\n\nAgreement: share of (question, model) cells where `label >= 0.5` equals \"the model was right\"; Brier: mean squared difference (0 is perfect).\n"
    );
    let _ = writeln!(s, "| labeler | split | agreement % | Brier | cells |");
    let _ = writeln!(s, "|---|---|---:|---:|---:|");
    for q in &r.label_quality {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.3} | {} |",
            q.labeler,
            q.split,
            pct(q.agreement),
            q.brier,
            q.cells
        );
    }
    let _ = writeln!(s);
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

/// Which training scores the routers' calibrations read: the common setting, with the
/// routers that fell back to another named.
fn calibration_scores(r: &RunResults, order: &[String]) -> String {
    let mut by: Vec<(String, Vec<&str>)> = Vec::new();
    for name in order {
        let Some(d) = r.routers.get(name).and_then(|x| x.cost.as_ref()) else {
            continue;
        };
        let label = if d.calibration_scores.is_empty() {
            "each router's in-sample scores of the training split".to_string()
        } else {
            d.calibration_scores.clone()
        };
        match by.iter_mut().find(|(l, _)| *l == label) {
            Some((_, names)) => names.push(name),
            None => by.push((label, vec![name])),
        }
    }
    by.sort_by_key(|(_, names)| std::cmp::Reverse(names.len()));
    let mut parts = by.into_iter();
    let Some((common, _)) = parts.next() else {
        return "the routers' scores of the training split".into();
    };
    let mut out = common;
    for (label, names) in parts {
        out.push_str(&format!(" ({}: {label})", names.join(", ")));
    }
    out
}

fn cost_section(
    s: &mut String,
    r: &RunResults,
    c: &rgd_experiment::costs::CostsOut,
    order: &[String],
) {
    let u = &c.unit;
    let _ = writeln!(s, "\n## Cost and quality (test split)\n");
    let _ = writeln!(
        s,
        "![cost–quality](cost_quality.svg)\n\nCosts per query ({u}): {}. Rule: {}; AIQ is the area under each curve's non-decreasing convex hull over the single models' cost range ({} to {} {u}), divided by its width. The best single model is {} ({} %, {} {u}/query). Operating points are calibrated on the training split only, on {}; cost saved and accuracy change carry paired 95 % bootstrap intervals over the test questions.\n",
        c.per_model
            .iter()
            .map(|(m, x)| format!("{m} {} ({})", num(x.cost), x.source))
            .collect::<Vec<_>>()
            .join(", "),
        match c.rule {
            rgd_experiment::cost::Rule::Penalty =>
                "pick the model maximizing score - lambda x cost",
            rgd_experiment::cost::Rule::Within =>
                "pick the cheapest model within delta of the best score",
        },
        num(c.cost_range[0]),
        num(c.cost_range[1]),
        c.best_single.0,
        pct(c.best_single.1[1]),
        num(c.best_single.1[0]),
        calibration_scores(r, order),
    );
    let _ = writeln!(
        s,
        "| router | AIQ | calibrated to | test cost | test accuracy | cost saved vs best single | accuracy change (points) | cost to reach 95% / 100% of best single | top-3 vote cost / accuracy |"
    );
    let _ = writeln!(s, "|---|---:|---|---:|---:|---:|---:|---:|---:|");
    let mut row = |name: &str, aiq: f64, d: &rgd_experiment::costs::CurveDetail| {
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
                "| {name} | {aiq:.3} | {}{} | {} | {} | {} %{} | {:+.1}{} | {reach} | {t3} |",
                k.target,
                if k.reached {
                    ""
                } else {
                    " (not reached on training data: closest setting)"
                },
                num(k.test_cost),
                pct(k.test_accuracy),
                pct(k.cost_saving),
                k.cost_saving_ci95
                    .map(|c| format!(" [{}, {}]", pct(c[0]), pct(c[1])))
                    .unwrap_or_default(),
                100.0 * k.accuracy_change,
                k.accuracy_change_ci95
                    .map(|c| format!(" [{:+.1}, {:+.1}]", 100.0 * c[0], 100.0 * c[1]))
                    .unwrap_or_default(),
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
        let mut line = |name: &str, d: &rgd_experiment::costs::CurveDetail| {
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

fn training_section(s: &mut String, title: &str, t: &rgd_experiment::training::TrainingData) {
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
    let mut row = |name: &str, g: &rgd_experiment::training::GroupDiagnostics| {
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

fn sources_section(s: &mut String, src: &rgd_experiment::sources::SourcesOut, order: &[String]) {
    type Metric = fn(&rgd_experiment::sources::SourceCell) -> (f64, [f64; 2]);
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

fn ablation_section(s: &mut String, a: &rgd_experiment::ablation::AblationOut, order: &[String]) {
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
