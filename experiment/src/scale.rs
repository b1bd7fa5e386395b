//! `rgd bench scale`: how each stage of a run grows with the training data. Simulated worlds
//! of the sizes asked (14 subjects, 6 models, 384-d, 7,000 test queries) go through the
//! routers asked; each stage's wall time and the process's peak memory during it are
//! recorded (peak reset before each stage where Linux allows, `/proc/self/clear_refs`).

use crate::error::Result;
use crate::evaluate::on_dataset;
use rgd_core::{Context, Registry};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// One stage of one world size.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StageRow {
    /// Training questions of the world.
    pub n_train: usize,
    /// The stage (`simulate`, `train ROUTER`, `route ROUTER`).
    pub stage: String,
    /// Wall seconds.
    pub seconds: f64,
    /// The process's peak resident memory during the stage (MiB), where measurable.
    pub peak_mib: Option<f64>,
    /// Top-1 accuracy on the test split (route stages).
    pub top1: Option<f64>,
}

/// The peak resident memory (VmHWM) in MiB.
pub fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Reset the peak so the next reading is this stage's (Linux: "5" to clear_refs).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Run the scale benchmark; `on_row` hears each finished stage.
pub fn scale(
    registry: &Registry,
    sizes: &[usize],
    routers: &[String],
    on_row: &mut dyn FnMut(&StageRow),
) -> Result<Vec<StageRow>> {
    let mut rows = Vec::new();
    let mut ctx = Context::new(".");
    ctx.quiet = true;
    for &n in sizes {
        let mut push = |row: StageRow| {
            on_row(&row);
            rows.push(row);
        };
        let mut world = toml::Table::new();
        world.insert("type".into(), "simulated".into());
        world.insert("subjects".into(), 14.into());
        world.insert("models".into(), 6.into());
        world.insert("dim".into(), 384.into());
        world.insert("train_per_subject".into(), ((n / 14).max(1) as i64).into());
        world.insert("test_per_subject".into(), 500.into());
        reset_peak();
        let t = Instant::now();
        let ds = registry
            .build_data_source(world, "bench scale [data]")?
            .load(&ctx)?;
        push(StageRow {
            n_train: ds.train.len(),
            stage: "simulate".into(),
            seconds: t.elapsed().as_secs_f64(),
            peak_mib: peak_rss_mib(),
            top1: None,
        });
        let stats = rgd_core::eval::confidence_stats(&ds.train);
        for name in routers {
            let mut table = toml::Table::new();
            table.insert("type".into(), name.clone().into());
            let router = registry.build_router(table, &format!("bench scale [routers.{name}]"))?;
            reset_peak();
            let ev = on_dataset(router.as_ref(), &ds, &stats, &ctx)?;
            let peak = peak_rss_mib();
            push(StageRow {
                n_train: ds.train.len(),
                stage: format!("train {name}"),
                seconds: ev.train_seconds,
                peak_mib: peak,
                top1: None,
            });
            push(StageRow {
                n_train: ds.train.len(),
                stage: format!("route {name}"),
                seconds: ev.route_seconds,
                peak_mib: peak,
                top1: Some(ev.eval.overall.top1),
            });
        }
    }
    Ok(rows)
}

/// The rows as a Markdown table: a row per stage, a column per world size.
pub fn table(rows: &[StageRow]) -> String {
    let mut sizes: Vec<usize> = rows.iter().map(|r| r.n_train).collect();
    sizes.dedup();
    let mut stages: Vec<&str> = Vec::new();
    for r in rows {
        if !stages.contains(&r.stage.as_str()) {
            stages.push(&r.stage);
        }
    }
    let mut s = String::from("| stage |");
    for n in &sizes {
        s.push_str(&format!(" {n} train: s / peak MiB |"));
    }
    s.push_str("\n|---|");
    s.push_str(&"---:|".repeat(sizes.len()));
    s.push('\n');
    for stage in stages {
        s.push_str(&format!("| {stage} |"));
        for n in &sizes {
            match rows.iter().find(|r| r.n_train == *n && r.stage == stage) {
                Some(r) => s.push_str(&format!(
                    " {:.2} / {} |",
                    r.seconds,
                    r.peak_mib.map_or("–".into(), |m| format!("{m:.0}"))
                )),
                None => s.push_str(" – |"),
            }
        }
        s.push('\n');
    }
    s
}
