//! `rgd sweep`: the paper's central experiment on simulated worlds — every router of a
//! pipeline as the generator's key gets worse (and as its questions separate the pool less),
//! over several world seeds; a table, a CSV, JSON and one plot per separation level.

use anyhow::{Context as _, Result, bail};
use plotters::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::data::CacheArgs;
use crate::plot::{PALETTE, err as e};

/// Sweep options.
#[derive(clap::Args, Debug, Clone)]
pub struct SweepArgs {
    /// A pipeline whose `[data]` is `type = "simulated"`.
    pub pipeline: PathBuf,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
    /// Key accuracies of the generator.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1.0,0.9,0.8,0.7,0.6,0.5,0.4"
    )]
    pub key_accuracy: Vec<f64>,
    /// Shares of generated questions every model answers alike (the second axis: how little
    /// the questions separate the pool).
    #[arg(long, value_delimiter = ',', default_value = "0.0,0.5")]
    pub easy_share: Vec<f64>,
    /// World seeds.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    pub seeds: Vec<u64>,
}

/// One cell of the sweep.
#[derive(Clone, Debug, Serialize)]
pub struct Cell {
    /// Key accuracy.
    pub key_accuracy: f64,
    /// Easy share.
    pub easy_share: f64,
    /// Router (or `best single in hindsight`).
    pub router: String,
    /// What it learns from.
    pub learns_from: String,
    /// Mean top-1 over seeds.
    pub top1_mean: f64,
    /// Standard deviation over seeds.
    pub top1_sd: f64,
    /// Per seed.
    pub top1: Vec<f64>,
}

/// Run the sweep.
pub fn sweep(registry: &rgd_core::Registry, a: &SweepArgs, quiet: bool) -> Result<Vec<Cell>> {
    let src = std::fs::read_to_string(&a.pipeline)
        .with_context(|| format!("reading {}", a.pipeline.display()))?;
    let base: toml::Table =
        toml::from_str(&src).with_context(|| a.pipeline.display().to_string())?;
    let is_sim = base
        .get("data")
        .and_then(|d| d.get("type"))
        .and_then(|t| t.as_str())
        == Some("simulated");
    if !is_sim {
        bail!(
            "{}: rgd sweep needs [data] type = \"simulated\" (it varies the generator's key accuracy and easy_share)",
            a.pipeline.display()
        );
    }
    let mut acc: BTreeMap<(u64, u64, String), (String, Vec<f64>)> = BTreeMap::new();
    let key = |x: f64| (x * 1e6).round() as u64;
    let total = a.key_accuracy.len() * a.easy_share.len() * a.seeds.len();
    let mut done = 0;
    for &ka in &a.key_accuracy {
        for &es in &a.easy_share {
            for &seed in &a.seeds {
                let mut t = base.clone();
                // the sweep's own seeds vary the world; retraining per seed would multiply it
                t.remove("training_seeds");
                let data = t
                    .get_mut("data")
                    .and_then(|d| d.as_table_mut())
                    .expect("checked above");
                data.insert("key_accuracy".into(), ka.into());
                data.insert("easy_share".into(), es.into());
                data.insert("seed".into(), (seed as i64).into());
                let dir = a.out.join(format!("runs/ka{ka}_es{es}_seed{seed}"));
                std::fs::create_dir_all(&dir)?;
                let p = dir.join("pipeline.toml");
                std::fs::write(&p, toml::to_string(&t)?)?;
                let r = crate::run::run(registry, &p, &dir, &CacheArgs::default(), true)?;
                for (name, x) in &r.routers {
                    acc.entry((key(ka), key(es), name.clone()))
                        .or_insert_with(|| (x.supervision.label().to_string(), Vec::new()))
                        .1
                        .push(x.top1);
                }
                acc.entry((key(ka), key(es), "best single in hindsight".into()))
                    .or_insert_with(|| ("test answers".into(), Vec::new()))
                    .1
                    .push(r.references.best_single);
                done += 1;
                if !quiet {
                    eprintln!(
                        "  sweep {done}/{total}: key accuracy {ka}, easy share {es}, seed {seed}"
                    );
                }
            }
        }
    }
    let cells: Vec<Cell> = acc
        .into_iter()
        .map(|((ka, es, router), (learns_from, v))| {
            let (m, sd) = crate::run::mean_sd(&v);
            Cell {
                key_accuracy: ka as f64 / 1e6,
                easy_share: es as f64 / 1e6,
                router,
                learns_from,
                top1_mean: m,
                top1_sd: sd,
                top1: v,
            }
        })
        .collect();
    std::fs::write(a.out.join("sweep.json"), serde_json::to_vec_pretty(&cells)?)?;
    let mut csv =
        String::from("key_accuracy,easy_share,router,learns_from,top1_mean,top1_sd,n_seeds\n");
    for c in &cells {
        csv.push_str(&format!(
            "{},{},{},{},{:.6},{:.6},{}\n",
            c.key_accuracy,
            c.easy_share,
            c.router,
            c.learns_from,
            c.top1_mean,
            c.top1_sd,
            c.top1.len()
        ));
    }
    std::fs::write(a.out.join("sweep.csv"), csv)?;
    for &es in &a.easy_share {
        plot(
            &a.out.join(format!("sweep_easy{es}.svg")),
            &format!(
                "Top-1 as the generator's key gets worse (easy share {es}, {} seeds)",
                a.seeds.len()
            ),
            cells.iter().filter(|c| key(c.easy_share) == key(es)),
        )?;
    }
    Ok(cells)
}

/// (key accuracy, mean top-1 %, sd %).
type Pt = (f64, f64, f64);

fn plot<'a>(path: &Path, title: &str, cells: impl Iterator<Item = &'a Cell>) -> Result<()> {
    let mut by: BTreeMap<String, (String, Vec<Pt>)> = BTreeMap::new();
    for c in cells {
        by.entry(c.router.clone())
            .or_insert_with(|| (c.learns_from.clone(), Vec::new()))
            .1
            .push((c.key_accuracy, 100.0 * c.top1_mean, 100.0 * c.top1_sd));
    }
    let xs: Vec<f64> = by.values().flat_map(|v| v.1.iter().map(|p| p.0)).collect();
    let ys: Vec<f64> = by
        .values()
        .flat_map(|v| v.1.iter().flat_map(|p| [p.1 - p.2, p.1 + p.2]))
        .collect();
    let (x0, x1) = (
        xs.iter().copied().fold(f64::INFINITY, f64::min),
        xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    );
    let (y0, y1) = (
        ys.iter().copied().fold(f64::INFINITY, f64::min),
        ys.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    );
    let root = SVGBackend::new(path, (900, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(e)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(60)
        .build_cartesian_2d((x0 - 0.03)..(x1 + 0.03), (y0 - 2.0)..(y1 + 2.0))
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc("generator's key accuracy on its own questions")
        .y_desc("top-1 accuracy on the real test split (%), mean ± sd over seeds")
        .draw()
        .map_err(e)?;
    for (i, (name, (learns, pts))) in by.iter().enumerate() {
        let mut pts = pts.clone();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let color = if name == "best single in hindsight" {
            RGBColor(120, 120, 120)
        } else {
            PALETTE[i % PALETTE.len()]
        };
        let dashed = learns == "answer key";
        let line: Vec<(f64, f64)> = pts.iter().map(|p| (p.0, p.1)).collect();
        let label = format!("{name} ({learns})");
        if dashed {
            chart
                .draw_series(DashedLineSeries::new(line, 8, 4, color.stroke_width(2)))
                .map_err(e)?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
        } else {
            chart
                .draw_series(LineSeries::new(line, color.stroke_width(2)))
                .map_err(e)?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
        }
        for p in &pts {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(p.0, p.1 - p.2), (p.0, p.1 + p.2)],
                    color.stroke_width(1),
                )))
                .map_err(e)?;
            chart
                .draw_series(std::iter::once(Circle::new((p.0, p.1), 3, color.filled())))
                .map_err(e)?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(200, 200, 200))
        .draw()
        .map_err(e)?;
    root.present().map_err(e)?;
    Ok(())
}
