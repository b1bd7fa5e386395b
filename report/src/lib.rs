//! A run's outputs for people and spreadsheets: `report.md`, `results.csv` and SVG plots
//! (plotters), from the typed results of `rgd-experiment`; and the sweep's.

pub mod markdown;
#[cfg(feature = "plots")]
pub mod plot;
pub mod sweep;

use rgd_experiment::RunResults;
use std::path::{Path, PathBuf};

pub use markdown::report;

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong writing outputs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be written.
    #[error("writing {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// A plot could not be drawn.
    #[error("drawing the plot: {0}")]
    Plot(String),
    /// The results could not be serialized.
    #[error("{0}")]
    Json(#[from] serde_json::Error),
}

/// Write through a temporary file and a rename, so an interrupted run never leaves a
/// half-written file.
pub fn write_file(path: &Path, contents: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).map_err(|source| Error::Io {
        path: tmp.clone(),
        source,
    })?;
    std::fs::rename(&tmp, path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// One row per router (and per failed router), for spreadsheets and pandas.
pub fn csv(r: &RunResults, order: &[String]) -> String {
    let mut s = String::from(
        "router,type,supervision,status,top1,top1_lo,top1_hi,top1_vs_best,top1_vs_best_lo,top1_vs_best_hi,top3_vote,top3_vote_lo,top3_vote_hi,calls_top1,calls_top3,gap_closed_top1,gap_closed_top3,train_s,route_s,aiq\n",
    );
    let f = |x: Option<f64>| x.map(|v| format!("{v:.6}")).unwrap_or_default();
    for name in order {
        if let Some(x) = r.routers.get(name) {
            s.push_str(&format!(
                "{name},{},{},ok,{:.6},{:.6},{:.6},{},{},{},{:.6},{:.6},{:.6},{},{},{},{},{:.4},{:.4},{}\n",
                x.type_name,
                x.supervision.label(),
                x.top1,
                x.ci95.top1[0],
                x.ci95.top1[1],
                f(x.vs_best_single.as_ref().map(|d| d.top1)),
                f(x.vs_best_single.as_ref().map(|d| d.top1_ci95[0])),
                f(x.vs_best_single.as_ref().map(|d| d.top1_ci95[1])),
                x.top3_vote,
                x.ci95.top3_vote[0],
                x.ci95.top3_vote[1],
                x.calls_per_query.top1,
                x.calls_per_query.top3_vote,
                f(x.oracle_gap_closed.top1),
                f(x.oracle_gap_closed.top3_vote),
                x.seconds.get("train").copied().unwrap_or(0.0),
                x.seconds.get("route").copied().unwrap_or(0.0),
                f(x.aiq),
            ));
        } else if let Some(x) = r.failed.get(name) {
            s.push_str(&format!("{name},{},,failed,,,,,,,,,,,,,,,,\n", x.type_name));
        }
    }
    s
}

/// Write `results.json`, `report.md`, `results.csv` and the plots of a run into `out`.
pub fn write_run(out: &Path, r: &RunResults) -> Result<()> {
    std::fs::create_dir_all(out).map_err(|source| Error::Io {
        path: out.to_path_buf(),
        source,
    })?;
    #[cfg(feature = "plots")]
    write_plots(out, r)?;
    write_file(&out.join("results.json"), &serde_json::to_vec_pretty(r)?)?;
    write_file(&out.join("report.md"), report(r, &r.order).as_bytes())?;
    write_file(&out.join("results.csv"), csv(r, &r.order).as_bytes())?;
    Ok(())
}

/// The run's SVG plots: cost–quality, accuracy, training sources and per-subject heat map.
#[cfg(feature = "plots")]
fn write_plots(out: &Path, r: &RunResults) -> Result<()> {
    let order = &r.order;
    if let Some(c) = &r.costs {
        let curves: Vec<plot::RouterCurve> = order
            .iter()
            .filter_map(|n| {
                let x = r.routers.get(n)?;
                let detail = x.cost.as_ref()?;
                Some((n.clone(), x.curve.clone()?, detail.top3_vote))
            })
            .collect();
        plot::cost_quality(
            &out.join("cost_quality.svg"),
            &format!("{}: cost and quality", r.task),
            &curves,
            c,
        )?;
    }
    let accs: Vec<plot::RouterAcc> = order
        .iter()
        .filter_map(|n| r.routers.get(n).map(|x| (n, x)))
        .map(|(n, x)| plot::RouterAcc {
            name: n.clone(),
            top1: (x.top1, x.ci95.top1),
            top3: (x.top3_vote, x.ci95.top3_vote),
        })
        .collect();
    let refs = &r.references;
    if let Some(src) = &r.sources {
        plot::sources(
            &out.join("sources.svg"),
            &format!("{}: routers by training source", r.task),
            src,
            order,
            refs.best_single,
            refs.oracle,
        )?;
    }
    if !accs.is_empty() {
        plot::accuracy(
            &out.join("accuracy.svg"),
            &format!("{}: routers on the test split", r.task),
            &accs,
            refs.best_single,
            refs.majority_vote,
            refs.oracle,
        )?;
        let mut cols: Vec<String> = accs.iter().map(|a| a.name.clone()).collect();
        cols.push("hindsight best".into());
        cols.push("oracle".into());
        let rows: Vec<(String, Vec<Option<f64>>)> = refs
            .per_subject
            .iter()
            .map(|(subj, rs)| {
                let mut v: Vec<Option<f64>> = accs
                    .iter()
                    .map(|a| r.routers[&a.name].per_subject.get(subj).map(|x| x.top1))
                    .collect();
                v.push(Some(rs.best_single));
                v.push(Some(rs.oracle));
                (subj.clone(), v)
            })
            .collect();
        plot::heatmap(
            &out.join("per_subject.svg"),
            &format!("{}: top-1 accuracy per subject (%)", r.task),
            &cols,
            &rows,
        )?;
    }
    Ok(())
}

/// The columns of [`pool_table`]: the routers whose top-1 it shows, by `type`.
pub const POOL_TABLE_ROUTERS: [&str; 4] = ["cascal", "knn", "mlp", "ranker"];

/// One markdown table, a row per run: best single, oracle and majority vote, then CASCAL's
/// top-1 and top-3 vote and kNN / MLP / ranker top-1, each with its paired 95 % interval
/// against the best single model (points), and the calls per query. A router the run lacks or
/// that failed shows `–`.
pub fn pool_table(runs: &[(String, &RunResults)]) -> String {
    let mut s = String::from(
        "| pool | models | best single | oracle | majority vote (calls) | CASCAL top-1 (1 call) | CASCAL top-3 vote (3 calls) | kNN | MLP | ranker |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let pct = |x: f64| format!("{:.1}", 100.0 * x);
    for (name, r) in runs {
        let by_type = |ty: &str| r.routers.values().find(|x| x.type_name == ty);
        let top1 = |ty: &str| {
            by_type(ty).map_or("–".to_string(), |x| match &x.vs_best_single {
                Some(d) => format!(
                    "{} ({:+.1} [{:+.1}, {:+.1}])",
                    pct(x.top1),
                    100.0 * d.top1,
                    100.0 * d.top1_ci95[0],
                    100.0 * d.top1_ci95[1]
                ),
                None => pct(x.top1),
            })
        };
        let refs = &r.references;
        let top3 = by_type("cascal").map_or("–".to_string(), |x| {
            format!(
                "{} ({:+.1})",
                pct(x.top3_vote),
                100.0 * (x.top3_vote - refs.best_single)
            )
        });
        s.push_str(&format!(
            "| {name} | {} | {} ({}) | {} | {} ({}) | {} | {top3} | {} | {} | {} |\n",
            r.models.len(),
            pct(refs.best_single),
            refs.best_single_model,
            pct(refs.oracle),
            pct(refs.majority_vote),
            r.models.len(),
            top1("cascal"),
            top1("knn"),
            top1("mlp"),
            top1("ranker"),
        ));
    }
    s
}
