//! CASCAL training: labels, the proficient questions of each model, per-model spherical
//! k-means, merging and pruning of centroids, per-cluster model rankings.

use super::*;
use rand::seq::SliceRandom;

pub(crate) fn round_to(x: f64, decimals: i32) -> f64 {
    if decimals < 0 {
        return x;
    }
    let p = 10f64.powi(decimals);
    (x * p).round_ties_even() / p
}

/// L2-normalize each row in place (rows of norm 0 stay 0; eps as the authors' 1e-9).
pub(crate) fn normalize_rows(mut x: Array2<f32>) -> Array2<f32> {
    for mut r in x.rows_mut() {
        let n = r.dot(&r).sqrt().max(1e-9);
        r.mapv_inplace(|v| v / n);
    }
    x
}

pub(crate) fn normalized(v: ArrayView1<f32>) -> Array1<f32> {
    let n = v.dot(&v).sqrt().max(1e-9);
    v.mapv(|x| x / n)
}

/// FNV-1a, for stable per-(subject, model) seeds independent of thread scheduling.
pub(crate) fn fnv(parts: &[&str], seed: u64) -> u64 {
    let mut h = 0xcbf29ce484222325u64 ^ seed;
    for p in parts {
        for b in p.bytes().chain([0xff]) {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
    }
    h
}

/// Questions each model shows proficiency on: (question index, weight) per model.
pub(crate) fn proficient(
    split: &Split,
    idx: &[usize],
    min_agreement: f64,
    weighted: bool,
) -> Vec<Vec<(usize, f64)>> {
    let m = split.n_models();
    let mut out = vec![Vec::new(); m];
    let mut counts = [0usize; rgd_core::N_LETTERS];
    for &q in idx {
        counts.fill(0);
        for j in 0..m {
            if let Some(c) = split.responses.choice[[q, j]] {
                counts[c.index()] += 1;
            }
        }
        let max = *counts.iter().max().unwrap_or(&0);
        if max == 0 {
            continue;
        }
        let in_plurality =
            |j: usize| split.responses.choice[[q, j]].is_some_and(|c| counts[c.index()] == max);
        let agreeing = (0..m).filter(|&j| in_plurality(j)).count();
        let agreement = agreeing as f64 / m as f64;
        if agreement < min_agreement {
            continue;
        }
        for (j, set) in out.iter_mut().enumerate() {
            if in_plurality(j) {
                set.push((q, if weighted { agreement } else { 1.0 }));
            }
        }
    }
    out
}

impl Cascal {
    pub(crate) fn check(&self) -> Result<(), CascalError> {
        let pos = [
            ("distance_temperature", self.distance_temperature),
            ("scoring_temperature", self.scoring_temperature),
            ("fallback_width", self.fallback_width),
        ];
        for (k, v) in pos {
            if !(v > 0.0 && v.is_finite()) {
                return Err(CascalError::Invalid(format!(
                    "{k} must be a finite number > 0, got {v}"
                )));
            }
        }
        // cosine distances lie in 0..=2; shares and similarities in their natural ranges
        let ranges = [
            ("fallback_distance", self.fallback_distance, 0.0, 2.0),
            ("merge_threshold", self.merge_threshold, 0.0, 2.0),
            ("min_agreement", self.min_agreement, 0.0, 1.0),
            ("prune_jaccard", self.prune_jaccard, 0.0, 1.0),
            ("silhouette_threshold", self.silhouette_threshold, -1.0, 1.0),
            ("kmeans_tol", self.kmeans_tol, 0.0, 1.0),
        ];
        for (k, v, lo, hi) in ranges {
            if !(v >= lo && v <= hi) {
                return Err(CascalError::Invalid(format!(
                    "{k} must be in {lo}..={hi}, got {v}"
                )));
            }
        }
        // f64 has about 15 significant decimals: more is no rounding at all
        for (k, v) in [
            ("score_decimals", self.score_decimals),
            ("global_decimals", self.global_decimals),
        ] {
            if v > 15 {
                return Err(CascalError::Invalid(format!(
                    "{k} must be at most 15 (negative: no rounding), got {v}"
                )));
            }
        }
        if !(1..=MAX_K_NEAREST).contains(&self.k_nearest) {
            return Err(CascalError::Invalid(format!(
                "k_nearest must be in 1..={MAX_K_NEAREST}, got {}",
                self.k_nearest
            )));
        }
        if self.k_min == 0 || self.k_max > 64 || self.kmeans_max_iter == 0 {
            return Err(CascalError::Invalid(format!(
                "k_min must be >= 1, k_max at most 64 and kmeans_max_iter >= 1 (got {}, {}, {})",
                self.k_min, self.k_max, self.kmeans_max_iter
            )));
        }
        self.consensus
            .check()
            .map_err(|e| CascalError::Invalid(format!("consensus: {e}")))?;
        if self.k_min > self.k_max {
            return Err(CascalError::Invalid(format!(
                "k_min ({}) > k_max ({})",
                self.k_min, self.k_max
            )));
        }
        Ok(())
    }

    /// Auto-k weighted k-means on the unit rows `rows` of `xn` (weights `w`, one per row):
    /// (unit centroids, each row's label).
    pub(crate) fn auto_kmeans(
        &self,
        xn: ArrayView2<f32>,
        rows: &[usize],
        w: &[f64],
        seed: u64,
    ) -> (Array2<f32>, Vec<usize>) {
        let n = rows.len();
        // the normalized weighted mean of each label's rows
        let centroids = |labels: &[usize], k: usize, wn: &[f64]| {
            let mut c = Array2::<f64>::zeros((k, xn.ncols()));
            for ((&q, &l), &wi) in rows.iter().zip(labels).zip(wn) {
                for (a, &v) in c.row_mut(l).iter_mut().zip(xn.row(q)) {
                    *a += wi * v as f64;
                }
            }
            normalize_rows(c.mapv(|v| v as f32))
        };
        let single = |wn: &[f64]| (centroids(&vec![0; n], 1, wn), vec![0usize; n]);
        if n <= 1 {
            return single(&vec![1.0; n]);
        }
        let wsum: f64 = w.iter().sum();
        let wn: Vec<f64> = if wsum > 0.0 {
            w.iter().map(|v| v * n as f64 / wsum).collect()
        } else {
            vec![1.0; n]
        };
        // distinct rows, counted only up to k_max + 1 (all that the choice of k needs)
        let cap = self.k_max + 1;
        let mut distinct: Vec<ArrayView1<f32>> = Vec::with_capacity(cap);
        for &q in rows {
            if distinct.len() >= cap {
                break;
            }
            let r = xn.row(q);
            if !distinct.contains(&r) {
                distinct.push(r);
            }
        }
        let n_unique = distinct.len();
        if n_unique == 1 {
            return single(&vec![1.0; n]);
        }
        // above `kmeans_max_points`, k and the centres come from a seeded sample
        let sample: Option<Vec<usize>> = (self.kmeans_max_points > 0 && n > self.kmeans_max_points)
            .then(|| {
                let mut order: Vec<usize> = (0..n).collect();
                order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_5a3f_1e5a_3b1e));
                order.truncate(self.kmeans_max_points);
                order.sort_unstable();
                order
            });
        let (xs, ws): (Array2<f32>, Vec<f64>) = match &sample {
            Some(at) => {
                let picked: Vec<usize> = at.iter().map(|&p| rows[p]).collect();
                (
                    xn.select(Axis(0), &picked),
                    at.iter().map(|&p| wn[p]).collect(),
                )
            }
            None => (xn.select(Axis(0), rows), wn.clone()),
        };
        let ns = xs.nrows();
        let max_k = self.k_max.min(ns - 1).min(n_unique - 1).max(1);
        let mut best: Option<(f64, usize, Array2<f32>, Vec<usize>)> = None;
        let tol = kmeans::scaled_tol(xs.view(), self.kmeans_tol);
        for k in self.k_min.max(2)..=max_k {
            let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_add(k as u64));
            let (centers, labels) = kmeans(xs.view(), &ws, k, self.kmeans_max_iter, tol, &mut rng);
            let s = silhouette_cosine(xs.view(), &labels, k);
            if best.as_ref().is_none_or(|(bs, _, _, _)| s > *bs) {
                best = Some((s, k, centers, labels));
            }
        }
        match best {
            Some((s, k, centers, labels)) if s >= self.silhouette_threshold => {
                let labels = match sample {
                    Some(_) => kmeans::nearest_labels(xn, rows, centers.view()),
                    None => labels,
                };
                (centroids(&labels, k, &wn), labels)
            }
            _ => single(&wn),
        }
    }

    /// Train the clusters of one subject.
    pub(crate) fn train_subject(
        &self,
        split: &Split,
        xn: &Array2<f32>,
        labels: &Array2<f64>,
        models: &[String],
        subject: &str,
        idx: &[usize],
    ) -> SubjectModel {
        let m = models.len();
        let sets = proficient(split, idx, self.min_agreement, self.weighted);
        // per-model centroids
        let mut cents: Vec<(String, Array1<f32>, usize)> = Vec::new();
        for (j, set) in sets.iter().enumerate() {
            if set.is_empty() {
                continue;
            }
            let rows: Vec<usize> = set.iter().map(|(q, _)| *q).collect();
            let w: Vec<f64> = set.iter().map(|(_, w)| *w).collect();
            let seed = fnv(&[subject, &models[j]], self.seed);
            let (c, lab) = self.auto_kmeans(xn.view(), &rows, &w, seed);
            let mut counts = vec![0usize; c.nrows()];
            for l in lab {
                counts[l] += 1;
            }
            for (k, row) in c.rows().into_iter().enumerate() {
                cents.push((
                    format!("{subject}::model={}::c{k}", models[j]),
                    row.to_owned(),
                    counts[k],
                ));
            }
        }
        // greedy merge of close centroids (the authors' order and chain rules)
        if self.merge_threshold > 0.0 && cents.len() > 1 {
            let nc = cents.len();
            let mut merged_into: Vec<Option<usize>> = vec![None; nc];
            for i in 0..nc {
                if merged_into[i].is_some() {
                    continue;
                }
                let c1 = normalized(cents[i].1.view());
                for j in i + 1..nc {
                    if merged_into[j].is_some() {
                        continue;
                    }
                    let c2 = normalized(cents[j].1.view());
                    if 1.0 - (c1.dot(&c2) as f64) < self.merge_threshold {
                        if cents[j].2 > cents[i].2 {
                            merged_into[i] = Some(j);
                            break;
                        } else {
                            merged_into[j] = Some(i);
                        }
                    }
                }
            }
            let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
            for i in 0..nc {
                let mut t = i;
                while let Some(n) = merged_into[t] {
                    t = n;
                }
                match groups.iter_mut().find(|(g, _)| *g == t) {
                    Some((_, members)) => members.push(i),
                    None => groups.push((t, vec![i])),
                }
            }
            cents = groups
                .into_iter()
                .map(|(t, members)| {
                    if members.len() == 1 {
                        return cents[t].clone();
                    }
                    let total: usize = members.iter().map(|&i| cents[i].2).sum();
                    let mut v = Array1::<f32>::zeros(xn.ncols());
                    for &i in &members {
                        v.scaled_add(cents[i].2 as f32, &cents[i].1);
                    }
                    let v = v.mapv(|x| x / total.max(1) as f32);
                    (cents[t].0.clone(), normalized(v.view()), total)
                })
                .collect();
        }
        // assign every question of the subject to its nearest centroid; drop empty clusters
        let assign = |cents: &[(String, Array1<f32>, usize)]| -> Vec<Vec<usize>> {
            let mut members = vec![Vec::new(); cents.len()];
            if cents.is_empty() {
                return members;
            }
            let mut c = Array2::zeros((cents.len(), xn.ncols()));
            for (k, (_, v, _)) in cents.iter().enumerate() {
                c.row_mut(k).assign(&normalized(v.view()));
            }
            let x = xn.select(Axis(0), idx);
            let sims = x.dot(&c.t());
            for (r, &q) in idx.iter().enumerate() {
                let row = sims.row(r);
                let mut best = 0;
                for k in 1..row.len() {
                    if row[k] > row[best] {
                        best = k;
                    }
                }
                members[best].push(q);
            }
            members
        };
        let members = assign(&cents);
        let mut clusters: Vec<(String, Array1<f32>, Vec<usize>)> = cents
            .into_iter()
            .zip(members)
            .filter(|(_, mem)| !mem.is_empty())
            .map(|((id, v, _), mem)| (id, v, mem))
            .collect();
        let score = |mem: &[usize]| -> Vec<f64> {
            (0..m)
                .map(|j| {
                    let s: f64 = mem.iter().map(|&q| labels[[q, j]]).sum();
                    round_to(s / mem.len() as f64, self.score_decimals)
                })
                .collect()
        };
        let top = |scores: &[f64]| -> Vec<usize> {
            let mut o: Vec<usize> = (0..m).collect();
            o.sort_by(|&a, &b| {
                scores[b]
                    .total_cmp(&scores[a])
                    .then(models[a].cmp(&models[b]))
            });
            o.truncate(self.prune_top);
            o
        };
        if self.prune && clusters.len() > 1 {
            let tops: Vec<Vec<usize>> = clusters.iter().map(|c| top(&score(&c.2))).collect();
            let nc = clusters.len();
            let mut keep = vec![true; nc];
            for i in 0..nc {
                if !keep[i] {
                    continue;
                }
                for j in i + 1..nc {
                    if !keep[j] {
                        continue;
                    }
                    let inter = tops[i].iter().filter(|x| tops[j].contains(x)).count();
                    let union = tops[i].len() + tops[j].len() - inter;
                    let sim = if union == 0 {
                        0.0
                    } else {
                        inter as f64 / union as f64
                    };
                    if sim >= self.prune_jaccard {
                        if clusters[j].2.len() > clusters[i].2.len() {
                            keep[i] = false;
                            let moved = std::mem::take(&mut clusters[i].2);
                            clusters[j].2.extend(moved);
                            break;
                        } else {
                            keep[j] = false;
                            let moved = std::mem::take(&mut clusters[j].2);
                            clusters[i].2.extend(moved);
                        }
                    }
                }
            }
            clusters = clusters
                .into_iter()
                .zip(keep)
                .filter(|(_, k)| *k)
                .map(|(mut c, _)| {
                    // reset the centroid to the normalized mean of its questions
                    let x = xn.select(Axis(0), &c.2);
                    let mean = x.mean_axis(Axis(0)).expect("non-empty cluster");
                    c.1 = normalized(mean.view());
                    c
                })
                .collect();
        }
        let clusters: Vec<Cluster> = clusters
            .into_iter()
            .map(|(id, v, mem)| Cluster {
                id,
                centroid: v.to_vec(),
                scores: score(&mem),
                size: mem.len(),
            })
            .collect();
        let representative = if clusters.is_empty() {
            // the authors average the raw embeddings here; the unit rows give the same
            // direction up to the rows' norms
            let x = xn.select(Axis(0), idx);
            normalized(x.mean_axis(Axis(0)).expect("subject has questions").view())
        } else {
            let mut v = Array1::<f32>::zeros(xn.ncols());
            for c in &clusters {
                v += &ArrayView1::from(&c.centroid[..]);
            }
            normalized(v.view())
        };
        SubjectModel {
            name: subject.to_string(),
            representative: representative.to_vec(),
            clusters,
        }
    }
}
