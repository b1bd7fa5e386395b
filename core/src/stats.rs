//! Small statistics shared by labelers, routers and evaluation.

use serde::{Deserialize, Serialize};

/// Median of the finite values of `xs` (NaN when there is none), like numpy's `nanmedian`.
pub fn nan_median(xs: impl IntoIterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = xs.into_iter().filter(|x| !x.is_nan()).collect();
    median_in_place(&mut v)
}

fn median_in_place(v: &mut [f64]) -> f64 {
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    let cmp = |a: &f64, b: &f64| a.total_cmp(b);
    let (_, hi, _) = v.select_nth_unstable_by(n / 2, cmp);
    let hi = *hi;
    if n % 2 == 1 {
        hi
    } else {
        // the lower middle is the maximum of the lower half
        let lo = v[..n / 2].iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (lo + hi) / 2.0
    }
}

/// A robust location and scale (median and 1.4826 x MAD) of one model's confidences.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LocScale {
    /// Location (median).
    pub mu: f64,
    /// Scale (1.4826 x median absolute deviation; falls back to the standard deviation, then 1).
    pub sigma: f64,
}

impl LocScale {
    /// The authors' `robust_location_scale`: median, 1.4826 x MAD; if that is 0 or not
    /// finite, the population standard deviation; if that is 0 (or undefined), 1. NaN values
    /// are ignored; with no finite value at all the result is (0, 1).
    pub fn robust(xs: &[f64]) -> LocScale {
        let vals: Vec<f64> = xs.iter().copied().filter(|x| !x.is_nan()).collect();
        if vals.is_empty() {
            return LocScale {
                mu: 0.0,
                sigma: 1.0,
            };
        }
        let mu = nan_median(vals.iter().copied());
        let mut sigma = 1.4826 * nan_median(vals.iter().map(|x| (x - mu).abs()));
        if sigma == 0.0 || !sigma.is_finite() {
            let n = vals.len() as f64;
            let mean = vals.iter().sum::<f64>() / n;
            let sd = (vals.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
            sigma = if sd == 0.0 || sd.is_nan() { 1.0 } else { sd };
        }
        LocScale { mu, sigma }
    }

    /// z-score of `x`; a non-positive or non-finite scale counts as 1.
    pub fn z(&self, x: f64) -> f64 {
        let s = if self.sigma.is_finite() && self.sigma > 0.0 {
            self.sigma
        } else {
            1.0
        };
        (x - self.mu) / s
    }
}

/// Mean of a slice (NaN when empty).
pub fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_match_numpy() {
        assert_eq!(nan_median([3.0, 1.0, 2.0]), 2.0);
        assert_eq!(nan_median([4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(nan_median([f64::NAN, 1.0, 5.0]), 3.0);
        assert!(nan_median([f64::NAN]).is_nan());
    }

    #[test]
    fn robust_scale_falls_back() {
        // MAD is 0 (more than half equal) -> population std
        let ls = LocScale::robust(&[1.0, 1.0, 1.0, 5.0]);
        assert_eq!(ls.mu, 1.0);
        assert!((ls.sigma - 3f64.sqrt()).abs() < 1e-12);
        // constant -> 1
        assert_eq!(LocScale::robust(&[2.0, 2.0]).sigma, 1.0);
        // nothing finite -> (0, 1)
        assert_eq!(
            LocScale::robust(&[f64::NAN]),
            LocScale {
                mu: 0.0,
                sigma: 1.0
            }
        );
    }
}
