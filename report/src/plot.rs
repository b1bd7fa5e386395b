//! SVG plots of a run (plotters).

use crate::{Error, Result};
use plotters::prelude::*;
use std::path::Path;

use rgd_experiment::costs::CostsOut;

/// A router's name, its top-1 curve (`[cost, accuracy]`) and its top-3 vote point.
pub type RouterCurve = (String, Vec<[f64; 2]>, Option<[f64; 2]>);

/// Colours of series, in order.
pub const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];

/// A plotters error as this crate's error.
pub fn err<E: std::fmt::Display>(e: E) -> Error {
    Error::Plot(e.to_string())
}

/// Draw the cost–quality plot: each router's top-1 curve (sorted by cost) with its top-3 vote
/// as a hollow marker, the cascade, the single models as labelled points, the zero router
/// (their convex hull, dashed) and the oracle next to what independent errors would give.
pub fn cost_quality(path: &Path, title: &str, routers: &[RouterCurve], c: &CostsOut) -> Result<()> {
    let mut xs: Vec<f64> = c.per_model.values().map(|m| m.cost).collect();
    let mut ys: Vec<f64> = c.per_model.values().map(|m| m.accuracy).collect();
    for (_, curve, t3) in routers {
        xs.extend(curve.iter().map(|p| p[0]));
        ys.extend(curve.iter().map(|p| p[1]));
        if let Some(p) = t3 {
            xs.push(p[0]);
            ys.push(p[1]);
        }
    }
    xs.extend(c.cascade.1.curve.iter().map(|p| p[0]));
    ys.extend(c.cascade.1.curve.iter().map(|p| p[1]));
    ys.push(c.oracle.accuracy);
    let (x0, x1) = (
        xs.iter().copied().fold(f64::INFINITY, f64::min),
        xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    );
    let (y0, y1) = (
        ys.iter().copied().fold(f64::INFINITY, f64::min),
        ys.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    );
    let xpad = ((x1 - x0) * 0.06).max(1e-6);
    let ypad = ((y1 - y0) * 0.08).max(0.01);
    let root = SVGBackend::new(path, (960, 640)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(
            (x0 - xpad)..(x1 + xpad),
            ((y0 - ypad) * 100.0)..((y1 + ypad) * 100.0),
        )
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(format!("average cost per query ({})", c.unit))
        .y_desc("accuracy on the test split (%)")
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(err)?;
    let pct = |p: &[f64; 2]| (p[0], 100.0 * p[1]);
    let grey = RGBColor(120, 120, 120);
    for (i, (name, curve, t3)) in routers.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let mut pts: Vec<(f64, f64)> = curve.iter().map(pct).collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
        let aiq = rgd_experiment::cost::aiq(curve, c.cost_range[0], c.cost_range[1]);
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)).point_size(2))
            .map_err(err)?
            .label(format!("{name} (top-1), AIQ {aiq:.3}"))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        if let Some(p) = t3 {
            let p = pct(p);
            chart
                .draw_series(std::iter::once(TriangleMarker::new(
                    p,
                    7,
                    color.stroke_width(2),
                )))
                .map_err(err)?;
        }
    }
    chart
        .draw_series(DashedLineSeries::new(
            c.zero_router.1.iter().map(pct),
            6,
            4,
            grey.stroke_width(2),
        ))
        .map_err(err)?
        .label(format!(
            "zero router (hull of single models), AIQ {:.3}",
            c.zero_router.0
        ))
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], grey.stroke_width(2)));
    let cascade_color = RGBColor(0, 0, 0);
    let mut cp: Vec<(f64, f64)> = c.cascade.1.curve.iter().map(pct).collect();
    cp.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    chart
        .draw_series(DashedLineSeries::new(
            cp,
            3,
            3,
            cascade_color.stroke_width(2),
        ))
        .map_err(err)?
        .label(format!(
            "cascade ({}), AIQ {:.3}",
            c.cascade.0.join(" > "),
            c.cascade.1.aiq
        ))
        .legend(move |(x, y)| {
            PathElement::new(vec![(x, y), (x + 18, y)], cascade_color.stroke_width(2))
        });
    for (m, mc) in &c.per_model {
        let p = (mc.cost, 100.0 * mc.accuracy);
        chart
            .draw_series(std::iter::once(Circle::new(p, 5, BLACK.filled())))
            .map_err(err)?;
        chart
            .draw_series(std::iter::once(Text::new(
                m.clone(),
                (p.0 + xpad * 0.15, p.1 + ypad * 45.0),
                ("sans-serif", 14),
            )))
            .map_err(err)?;
    }
    if routers.iter().any(|r| r.2.is_some()) {
        chart
            .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())
            .map_err(err)?
            .label("triangles: each router's top-3 vote (pays for three models)")
            .legend(|(x, y)| TriangleMarker::new((x + 9, y), 6, BLACK.stroke_width(1)));
    }
    let o = (c.oracle.cost, 100.0 * c.oracle.accuracy);
    chart
        .draw_series(std::iter::once(Cross::new(o, 7, BLACK.stroke_width(2))))
        .map_err(err)?;
    chart
        .draw_series(std::iter::once(Text::new(
            format!(
                "oracle {:.1}% (independent errors: {:.1}%)",
                100.0 * c.oracle.accuracy,
                100.0 * c.oracle.oracle_if_independent
            ),
            (o.0, o.1 - ypad * 35.0),
            ("sans-serif", 14),
        )))
        .map_err(err)?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(200, 200, 200))
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// One router's accuracies and intervals, for [`accuracy`].
pub struct RouterAcc {
    /// Router name.
    pub name: String,
    /// Top-1 and its 95% interval.
    pub top1: (f64, [f64; 2]),
    /// Top-3 vote and its 95% interval.
    pub top3: (f64, [f64; 2]),
}

/// Accuracy per router with 95% whiskers (top-1 filled, top-3 vote hollow), and the best
/// single model, the pool's majority vote and the oracle as horizontal lines.
pub fn accuracy(
    path: &Path,
    title: &str,
    routers: &[RouterAcc],
    best_single: f64,
    majority: f64,
    oracle: f64,
) -> Result<()> {
    let n = routers.len().max(1);
    let mut lo = best_single.min(majority);
    let mut hi = oracle.max(majority);
    for r in routers {
        lo = lo.min(r.top1.1[0]).min(r.top3.1[0]);
        hi = hi.max(r.top1.1[1]).max(r.top3.1[1]);
    }
    let (lo, hi) = ((lo - 0.03).max(0.0) * 100.0, (hi + 0.03).min(1.0) * 100.0);
    let root = SVGBackend::new(path, (140 + 110 * n as u32, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let names: Vec<String> = routers.iter().map(|r| r.name.clone()).collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(-0.6f64..(n as f64 - 0.4), lo..hi)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n)
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 {
                names.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc("accuracy on the test split (%), 95% bootstrap intervals")
        .draw()
        .map_err(err)?;
    let x1 = n as f64 - 0.4;
    for (v, label, color) in [
        (best_single, "best single model", RGBColor(120, 120, 120)),
        (majority, "majority vote of the pool", RGBColor(44, 160, 44)),
        (oracle, "oracle", RGBColor(214, 39, 40)),
    ] {
        chart
            .draw_series(DashedLineSeries::new(
                [(-0.6, 100.0 * v), (x1, 100.0 * v)],
                6,
                4,
                color.stroke_width(1),
            ))
            .map_err(err)?
            .label(format!("{label} {:.1}%", 100.0 * v))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
    }
    let blue = PALETTE[0];
    for (i, r) in routers.iter().enumerate() {
        for (dx, (v, ci), filled) in [(-0.12, r.top1, true), (0.12, r.top3, false)] {
            let x = i as f64 + dx;
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(x, 100.0 * ci[0]), (x, 100.0 * ci[1])],
                    blue.stroke_width(2),
                )))
                .map_err(err)?;
            let style = if filled {
                blue.filled()
            } else {
                blue.stroke_width(2)
            };
            chart
                .draw_series(std::iter::once(Circle::new((x, 100.0 * v), 5, style)))
                .map_err(err)?;
        }
    }
    chart
        .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())
        .map_err(err)?
        .label("filled: top-1; hollow: top-3 vote")
        .legend(move |(x, y)| Circle::new((x + 9, y), 4, blue.filled()));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(200, 200, 200))
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// Per-subject heatmap of top-1 accuracy: subjects down, routers (then the best single model
/// in hindsight and the oracle) across; each cell shows its value.
pub fn heatmap(
    path: &Path,
    title: &str,
    cols: &[String],
    rows: &[(String, Vec<Option<f64>>)],
) -> Result<()> {
    let (nc, nr) = (cols.len().max(1), rows.len().max(1));
    let label_w = 12 + 7 * rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(8) as u32;
    let root = SVGBackend::new(path, (label_w + 96 * nc as u32 + 40, 110 + 26 * nr as u32))
        .into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    root.draw(&Text::new(
        format!("{title} (colour: lowest to highest value shown)"),
        (10, 8),
        ("sans-serif", 18),
    ))
    .map_err(err)?;
    let vals_all: Vec<f64> = rows
        .iter()
        .flat_map(|r| r.1.iter().flatten().copied())
        .collect();
    let vmin = vals_all.iter().copied().fold(f64::INFINITY, f64::min);
    let vmax = vals_all.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let span = (vmax - vmin).max(1e-9);
    let top = 70i32;
    for (j, c) in cols.iter().enumerate() {
        let x = label_w as i32 + 96 * j as i32;
        root.draw(&Text::new(
            c.chars().take(16).collect::<String>(),
            (x + 4, top - 20),
            ("sans-serif", 12),
        ))
        .map_err(err)?;
    }
    for (i, (subject, vals)) in rows.iter().enumerate() {
        let y = top + 26 * i as i32;
        root.draw(&Text::new(subject.clone(), (8, y + 6), ("sans-serif", 12)))
            .map_err(err)?;
        for (j, v) in vals.iter().enumerate() {
            let x = label_w as i32 + 96 * j as i32;
            let color = match v {
                // white (the lowest value shown) to blue (the highest)
                Some(a) => {
                    let t = ((a - vmin) / span).clamp(0.0, 1.0);
                    RGBColor(
                        (255.0 - 224.0 * t) as u8,
                        (255.0 - 136.0 * t) as u8,
                        (255.0 - 75.0 * t) as u8,
                    )
                }
                None => RGBColor(235, 235, 235),
            };
            root.draw(&Rectangle::new([(x, y), (x + 94, y + 24)], color.filled()))
                .map_err(err)?;
            let text = v
                .map(|a| format!("{:.1}", 100.0 * a))
                .unwrap_or_else(|| "–".into());
            let tc = if v.is_some_and(|a| (a - vmin) / span > 0.6) {
                WHITE
            } else {
                BLACK
            };
            root.draw(&Text::new(
                text,
                (x + 30, y + 6),
                ("sans-serif", 12).into_font().color(&tc),
            ))
            .map_err(err)?;
        }
    }
    root.present().map_err(err)?;
    Ok(())
}

/// Every router's top-1 (95% interval) on each training source, side by side
/// (`sources.svg`): the paper's comparison of generated against real training data.
pub fn sources(
    path: &Path,
    title: &str,
    src: &rgd_experiment::sources::SourcesOut,
    order: &[String],
    best_single: f64,
    oracle: f64,
) -> Result<()> {
    let routers: Vec<&String> = order
        .iter()
        .filter(|n| src.results.contains_key(*n))
        .collect();
    let n = routers.len().max(1);
    let k = src.order.len().max(1);
    let (mut lo, mut hi) = (best_single, oracle.max(best_single));
    for cells in src.results.values() {
        for c in cells.values() {
            lo = lo.min(c.top1_ci95[0]);
            hi = hi.max(c.top1_ci95[1]);
        }
    }
    let (lo, hi) = ((lo - 0.03).max(0.0) * 100.0, (hi + 0.03).min(1.0) * 100.0);
    let root = SVGBackend::new(path, (160 + 120 * n as u32, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let names: Vec<String> = routers.iter().map(|r| r.to_string()).collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(-0.6f64..(n as f64 - 0.4), lo..hi)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n)
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 {
                names.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc("top-1 accuracy on the test split (%), 95% bootstrap intervals")
        .draw()
        .map_err(err)?;
    let x1 = n as f64 - 0.4;
    for (v, label, color) in [
        (best_single, "best single model", RGBColor(120, 120, 120)),
        (oracle, "oracle", RGBColor(214, 39, 40)),
    ] {
        chart
            .draw_series(DashedLineSeries::new(
                [(-0.6, 100.0 * v), (x1, 100.0 * v)],
                6,
                4,
                color.stroke_width(1),
            ))
            .map_err(err)?
            .label(format!("{label} {:.1}%", 100.0 * v))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
    }
    let width = 0.6;
    for (j, source) in src.order.iter().enumerate() {
        let color = PALETTE[j % PALETTE.len()];
        let dx = if k == 1 {
            0.0
        } else {
            -width / 2.0 + width * j as f64 / (k - 1) as f64
        };
        let mut first = true;
        for (i, r) in routers.iter().enumerate() {
            let Some(c) = src.results.get(*r).and_then(|m| m.get(source)) else {
                continue;
            };
            let x = i as f64 + dx;
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(x, 100.0 * c.top1_ci95[0]), (x, 100.0 * c.top1_ci95[1])],
                    color.stroke_width(2),
                )))
                .map_err(err)?;
            let s = chart
                .draw_series(std::iter::once(Circle::new(
                    (x, 100.0 * c.top1),
                    5,
                    color.filled(),
                )))
                .map_err(err)?;
            if first {
                let n_train = src.n_train.get(source).copied().unwrap_or(0);
                s.label(format!("trained on {source} ({n_train} questions)"))
                    .legend(move |(x, y)| Circle::new((x + 9, y), 4, color.filled()));
                first = false;
            }
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(200, 200, 200))
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}
