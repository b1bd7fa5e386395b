//! The sweep's outputs: `sweep.json`, `sweep.csv` and one plot per easy share.

use crate::Result;
#[cfg(feature = "plots")]
use crate::plot::{PALETTE, err as e};
#[cfg(feature = "plots")]
use plotters::prelude::*;
use rgd_experiment::sweep::Cell;
#[cfg(feature = "plots")]
use std::collections::BTreeMap;
use std::path::Path;

/// Write `sweep.json`, `sweep.csv` and `sweep_easy{E}.svg` per easy share into `out`.
pub fn write(out: &Path, cells: &[Cell], easy_shares: &[f64], n_seeds: usize) -> Result<()> {
    crate::write_file(&out.join("sweep.json"), &serde_json::to_vec_pretty(cells)?)?;
    let mut csv =
        String::from("key_accuracy,easy_share,router,learns_from,top1_mean,top1_sd,n_seeds\n");
    for c in cells {
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
    crate::write_file(&out.join("sweep.csv"), csv.as_bytes())?;
    #[cfg(not(feature = "plots"))]
    let _ = (easy_shares, n_seeds); // the plots use them
    #[cfg(feature = "plots")]
    for &es in easy_shares {
        let key = |x: f64| (x * 1e6).round() as u64;
        plot(
            &out.join(format!("sweep_easy{es}.svg")),
            &format!("Top-1 as the generator's key gets worse (easy share {es}, {n_seeds} seeds)"),
            cells.iter().filter(|c| key(c.easy_share) == key(es)),
        )?;
    }
    Ok(())
}

/// (key accuracy, mean top-1 %, sd %).
#[cfg(feature = "plots")]
type Pt = (f64, f64, f64);

#[cfg(feature = "plots")]
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
