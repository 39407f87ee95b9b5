//! Error statistics of a quantized result against a float reference.

use std::fmt;

/// How far `got` is from `reference`, computed in f64.
///
/// - `max_abs = max |got - ref|`;
/// - `max_rel = max_abs / max |ref|` (relative to the largest reference magnitude, so that
///   outputs near zero do not dominate);
/// - `sqnr_db = 10 log10(sum ref^2 / sum (got - ref)^2)` (infinite when they are equal).
///
/// ```
/// use hybridq::stats::ErrorStats;
/// let s = ErrorStats::compare(&[1.0, -2.0], &[1.0, -2.5]);
/// assert_eq!(s.max_abs, 0.5);
/// assert_eq!(s.max_rel, 0.25);
/// assert!((s.sqnr_db - 10.0 * (5.0f64 / 0.25).log10()).abs() < 1e-12);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ErrorStats {
    /// Largest absolute difference.
    pub max_abs: f64,
    /// Largest absolute difference over the largest reference magnitude.
    pub max_rel: f64,
    /// Signal-to-quantization-noise ratio in dB.
    pub sqnr_db: f64,
    /// Mean signed difference (a bias indicator: near 0 for unbiased rounding).
    pub mean_signed: f64,
    /// Number of values compared.
    pub count: usize,
}

impl ErrorStats {
    /// Compares two equally long slices (extra values of the longer one are ignored).
    pub fn compare(reference: &[f32], got: &[f32]) -> Self {
        let (mut max_abs, mut max_ref, mut signal, mut noise, mut signed) =
            (0.0f64, 0.0f64, 0.0f64, 0.0f64, 0.0f64);
        let mut count = 0usize;
        for (&r, &g) in reference.iter().zip(got) {
            let (r, g) = (r as f64, g as f64);
            let d = g - r;
            max_abs = max_abs.max(d.abs());
            max_ref = max_ref.max(r.abs());
            signal += r * r;
            noise += d * d;
            signed += d;
            count += 1;
        }
        let max_rel = if max_ref > 0.0 {
            max_abs / max_ref
        } else if max_abs > 0.0 {
            f64::INFINITY
        } else {
            0.0
        };
        let sqnr_db = if noise == 0.0 {
            f64::INFINITY
        } else {
            10.0 * (signal / noise).log10()
        };
        let mean_signed = if count > 0 {
            signed / count as f64
        } else {
            0.0
        };
        Self {
            max_abs,
            max_rel,
            sqnr_db,
            mean_signed,
            count,
        }
    }
}

impl fmt::Display for ErrorStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "max_abs {:.3e} max_rel {:.3e} sqnr {:.1} dB",
            self.max_abs, self.max_rel, self.sqnr_db
        )
    }
}
