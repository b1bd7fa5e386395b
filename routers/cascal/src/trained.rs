//! A trained CASCAL router: its subjects' clusters and rankings, and two-stage inference
//! (subject, then nearest clusters) with a global fallback.

use super::*;

/// One cluster of a subject.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cluster {
    /// `subject::model=M::cJ` of the centroid that founded it.
    pub id: String,
    /// Unit centroid.
    pub centroid: Vec<f32>,
    /// Mean label per model (rounded), pool order.
    pub scores: Vec<f64>,
    /// Training questions assigned.
    pub size: usize,
}

/// A subject's clusters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SubjectModel {
    /// Subject name.
    pub name: String,
    /// Unit representative (mean of its centroids).
    pub representative: Vec<f32>,
    /// Its clusters (may be empty: the subject then routes by the global ranking).
    pub clusters: Vec<Cluster>,
}

/// Inference parameters kept in the artifact.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct InferParams {
    pub(crate) two_stage: bool,
    pub(crate) k_nearest: usize,
    pub(crate) distance_temperature: f64,
    pub(crate) sharpen: bool,
    pub(crate) scoring_temperature: f64,
    pub(crate) fallback: bool,
    pub(crate) fallback_distance: f64,
    pub(crate) fallback_width: f64,
}

/// A trained CASCAL router (saved as an artifact by `rgd train`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainedCascal {
    /// Pool models.
    pub models: Vec<String>,
    /// Per-subject clusters.
    pub subjects: Vec<SubjectModel>,
    /// Global mean label per model (fallback).
    pub global: Vec<f64>,
    /// Training-split confidence statistics per model.
    pub train_stats: Vec<LocScale>,
    pub(crate) params: InferParams,
    /// Lookup tables derived from the above (built on first use, also after loading).
    #[serde(skip)]
    pub(crate) derived: std::sync::OnceLock<Derived>,
}

/// Per-subject `(unit centroids [k, d], sharpened scores [k, M], usable flags)`.
type Table = (Array2<f32>, Array2<f64>, Vec<bool>);

#[derive(Clone, Debug)]
pub(crate) struct Derived {
    /// Unit subject representatives `[S, d]` (None without subjects).
    pub(crate) reps: Option<Array2<f32>>,
    pub(crate) tables: Vec<Table>,
}

impl TrainedCascal {
    pub(crate) fn d(&self) -> &Derived {
        self.derived.get_or_init(|| self.build_derived())
    }

    pub(crate) fn build_derived(&self) -> Derived {
        let d = self
            .subjects
            .first()
            .map(|s| s.representative.len())
            .unwrap_or(0);
        let mut reps = Array2::zeros((self.subjects.len(), d));
        let tables = self
            .subjects
            .iter()
            .enumerate()
            .map(|(i, s)| {
                reps.row_mut(i)
                    .assign(&ArrayView1::from(&s.representative[..]));
                let m = self.models.len();
                let mut c = Array2::zeros((s.clusters.len(), d));
                let mut sharp = Array2::zeros((s.clusters.len(), m));
                let mut ok = vec![true; s.clusters.len()];
                for (k, cl) in s.clusters.iter().enumerate() {
                    c.row_mut(k).assign(&ArrayView1::from(&cl.centroid[..]));
                    let raw = &cl.scores;
                    let sum: f64 = raw.iter().sum();
                    let finite = raw.iter().all(|v| v.is_finite());
                    let row: Vec<f64> = if !self.params.sharpen || sum <= 0.0 || !finite {
                        raw.clone()
                    } else {
                        let mx = raw.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                        let e: Vec<f64> = raw
                            .iter()
                            .map(|v| ((v - mx) / self.params.scoring_temperature).exp())
                            .collect();
                        let es: f64 = e.iter().sum();
                        e.into_iter().map(|v| v / es).collect()
                    };
                    let rs: f64 = row.iter().sum();
                    ok[k] = row.iter().all(|v| v.is_finite()) && rs > 0.0;
                    sharp.row_mut(k).assign(&ArrayView1::from(&row[..]));
                }
                (normalize_rows(c), sharp, ok)
            })
            .collect();
        Derived {
            reps: (!self.subjects.is_empty()).then(|| normalize_rows(reps)),
            tables,
        }
    }

    /// Route from precomputed similarities: subject choice and centroid similarities.
    pub(crate) fn combine(
        &self,
        subject: usize,
        sims: ArrayView1<f32>,
        out: &mut [f64],
    ) -> (usize, f64) {
        out.iter_mut().for_each(|v| *v = 0.0);
        let (_, sharp, ok) = &self.d().tables[subject];
        let p = &self.params;
        if sims.is_empty() {
            out.copy_from_slice(&self.global);
            return (0, f64::NAN);
        }
        // k nearest by distance = 1 - sim (stable: ties keep centroid order)
        let mut near: Vec<(usize, f64)> = Vec::with_capacity(p.k_nearest + 1);
        for (k, &s) in sims.iter().enumerate() {
            let d = 1.0 - s as f64;
            let pos = near.partition_point(|&(_, nd)| nd <= d);
            if pos < p.k_nearest {
                near.insert(pos, (k, d));
                near.truncate(p.k_nearest);
            }
        }
        let d0 = near[0].1;
        let mut w: Vec<f64> = near
            .iter()
            .map(|(_, d)| -d / p.distance_temperature)
            .collect();
        if w.len() == 1 {
            w[0] = 1.0;
        } else {
            let mx = w.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            w.iter_mut().for_each(|v| *v = (*v - mx).exp());
            let s: f64 = w.iter().sum();
            w.iter_mut().for_each(|v| *v /= s);
        }
        for ((k, _), wi) in near.iter().zip(&w) {
            if !ok[*k] {
                continue;
            }
            for (o, s) in out.iter_mut().zip(sharp.row(*k)) {
                *o += wi * s;
            }
        }
        if p.fallback && d0 > p.fallback_distance {
            let alpha = ((d0 - p.fallback_distance) / p.fallback_width).min(1.0);
            let ps: f64 = out.iter().sum();
            let gs: f64 = self.global.iter().sum();
            for (o, g) in out.iter_mut().zip(&self.global) {
                let pn = if ps > 0.0 { *o / ps } else { 0.0 };
                let gn = if gs > 0.0 { g / gs } else { *g };
                *o = (1.0 - alpha) * pn + alpha * gn;
            }
        }
        (near[0].0, d0)
    }

    pub(crate) fn pick_subject(&self, v: ArrayView1<f32>) -> Option<(usize, f64)> {
        let reps = self.d().reps.as_ref()?;
        if self.params.two_stage {
            let mut best: Option<(usize, f64)> = None;
            for (i, r) in reps.rows().into_iter().enumerate() {
                let d = 1.0 - r.dot(&v) as f64;
                if best.is_none_or(|(_, bd)| d < bd) {
                    best = Some((i, d));
                }
            }
            best
        } else {
            // nearest centroid of any subject
            let mut best: Option<(usize, f64)> = None;
            for (i, (c, _, _)) in self.d().tables.iter().enumerate() {
                for r in c.rows() {
                    let d = 1.0 - r.dot(&v) as f64;
                    if best.is_none_or(|(_, bd)| d < bd) {
                        best = Some((i, d));
                    }
                }
            }
            best
        }
    }
}

#[typetag::serde(name = "cascal")]
impl TrainedRouter for TrainedCascal {
    fn models(&self) -> &[String] {
        &self.models
    }
    fn validate(&self) -> rgd_core::Result<()> {
        use rgd_core::artifact;
        let m = self.models.len();
        artifact::models(&self.models)?;
        artifact::len("global", self.global.len(), m, "one per model")?;
        artifact::finite("global", &self.global)?;
        if !self.train_stats.is_empty() {
            artifact::len("train_stats", self.train_stats.len(), m, "one per model")?;
        }
        // the embedding dimension is the length most vectors have, so the one vector that was
        // edited is the one named (not its neighbours, measured against it)
        let mut lengths: BTreeMap<usize, usize> = BTreeMap::new();
        for s in &self.subjects {
            *lengths.entry(s.representative.len()).or_default() += 1;
            for c in &s.clusters {
                *lengths.entry(c.centroid.len()).or_default() += 1;
            }
        }
        let d = lengths
            .iter()
            .max_by_key(|(len, n)| (**n, std::cmp::Reverse(**len)))
            .map(|(len, _)| *len);
        if d == Some(0) {
            return Err(rgd_core::Error::Data(
                "artifact field `subjects[0].representative`: empty".into(),
            ));
        }
        for (i, s) in self.subjects.iter().enumerate() {
            let d = d.unwrap_or_default();
            let f = |x: &str| format!("subjects[{i}].{x}");
            artifact::len(
                &f("representative"),
                s.representative.len(),
                d,
                "the embedding dimension",
            )?;
            artifact::finite(&f("representative"), &s.representative)?;
            for (k, c) in s.clusters.iter().enumerate() {
                let f = |x: &str| format!("subjects[{i}].clusters[{k}].{x}");
                artifact::len(
                    &f("centroid"),
                    c.centroid.len(),
                    d,
                    "the embedding dimension",
                )?;
                artifact::finite(&f("centroid"), &c.centroid)?;
                artifact::len(&f("scores"), c.scores.len(), m, "one per model")?;
                artifact::finite(&f("scores"), &c.scores)?;
            }
        }
        let p = &self.params;
        artifact::range(
            "params.k_nearest",
            p.k_nearest as f64,
            1.0,
            crate::MAX_K_NEAREST as f64,
        )?;
        artifact::positive("params.distance_temperature", p.distance_temperature)?;
        artifact::positive("params.scoring_temperature", p.scoring_temperature)?;
        artifact::range("params.fallback_distance", p.fallback_distance, 0.0, 2.0)?;
        artifact::positive("params.fallback_width", p.fallback_width)
    }

    fn score(&self, query: &Query<'_>, out: &mut [f64]) -> rgd_core::Result<()> {
        let e = query.embedding;
        let d = self.d().reps.as_ref().map(|r| r.ncols()).unwrap_or(e.len());
        if e.len() != d {
            return Err(CascalError::Route {
                id: query.id.to_string(),
                msg: format!(
                    "embedding has {} values, the router was trained on {d}",
                    e.len()
                ),
            }
            .into());
        }
        let v = normalized(e);
        match self.pick_subject(v.view()) {
            None => out.copy_from_slice(&self.global),
            Some((s, _)) => {
                let sims = self.d().tables[s].0.dot(&v);
                self.combine(s, sims.view(), out);
            }
        }
        Ok(())
    }

    fn score_split(&self, split: &Split) -> rgd_core::Result<Array2<f64>> {
        let m = self.models.len();
        let n = split.len();
        let mut out = Array2::zeros((n, m));
        let Some(reps) = self.d().reps.as_ref() else {
            for mut r in out.rows_mut() {
                r.assign(&ArrayView1::from(&self.global[..]));
            }
            return Ok(out);
        };
        if split.embeddings.ncols() != reps.ncols() && n > 0 {
            return Err(CascalError::Route {
                id: split.questions[0].id.clone(),
                msg: format!(
                    "embeddings have {} values, the router was trained on {}",
                    split.embeddings.ncols(),
                    reps.ncols()
                ),
            }
            .into());
        }
        if !self.params.two_stage {
            return rgd_core::score_each(self, split);
        }
        let qn = normalize_rows(split.embeddings.clone());
        let rs = qn.dot(&reps.t());
        let mut by_subject: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (i, row) in rs.rows().into_iter().enumerate() {
            let mut best = 0;
            for k in 1..row.len() {
                if 1.0 - row[k] < 1.0 - row[best] {
                    best = k;
                }
            }
            by_subject.entry(best).or_default().push(i);
        }
        let mut buf = vec![0.0; m];
        for (s, rows) in by_subject {
            let sims = qn.select(Axis(0), &rows).dot(&self.d().tables[s].0.t());
            for (r, &i) in rows.iter().enumerate() {
                self.combine(s, sims.row(r), &mut buf);
                out.row_mut(i).assign(&ArrayView1::from(&buf[..]));
            }
        }
        Ok(out)
    }

    fn explain(&self, query: &Query<'_>) -> Option<String> {
        let v = normalized(query.embedding);
        let (s, ds) = self.pick_subject(v.view())?;
        let subj = &self.subjects[s];
        if subj.clusters.is_empty() {
            return Some(format!(
                "subject `{}` has no cluster: global ranking",
                subj.name
            ));
        }
        let sims = self.d().tables[s].0.dot(&v);
        let mut buf = vec![0.0; self.models.len()];
        let (k, d0) = self.combine(s, sims.view(), &mut buf);
        let fb = if self.params.fallback && d0 > self.params.fallback_distance {
            format!(
                ", global fallback weight {:.2}",
                ((d0 - self.params.fallback_distance) / self.params.fallback_width).min(1.0)
            )
        } else {
            String::new()
        };
        Some(format!(
            "subject `{}` (distance {ds:.3}), nearest cluster `{}` (distance {d0:.3}, {} training questions){fb}",
            subj.name, subj.clusters[k].id, subj.clusters[k].size
        ))
    }
}
