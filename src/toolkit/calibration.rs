//! Calibration observers: they watch the float values a tensor takes on representative data
//! and produce its activation range, then its (scale, zero point) through
//! [`AffineParams::from_range`].
//!
//! - [`MinMaxObserver`]: the running minimum and maximum (what TFLite's converter records).
//! - [`MovingAverageMinMaxObserver`]: an exponential moving average of each batch's min and
//!   max, less sensitive to one unusual batch.
//! - [`HistogramObserver`]: a histogram of every value; the range is cut at a percentile, so
//!   a few outliers do not stretch the scale for everyone else.
//!
//! ```
//! use hybridq::toolkit::affine::QuantType;
//! use hybridq::toolkit::calibration::{HistogramObserver, MinMaxObserver, Observer};
//!
//! let mut data: Vec<f32> = (0..10_000).map(|i| ((i % 200) as f32 - 100.0) / 50.0).collect();
//! data[1234] = 1000.0; // one outlier
//! let (mut minmax, mut hist) = (MinMaxObserver::new(), HistogramObserver::new(99.9));
//! minmax.observe(&data)?;
//! hist.observe(&data)?;
//! assert_eq!(minmax.range(), Some((-2.0, 1000.0)));
//! let (lo, hi) = hist.range().unwrap();
//! assert!(lo <= -1.9 && (1.9..2.2).contains(&hi), "{lo} {hi}");
//! let p = hist.params(QuantType::Int8, false)?;
//! assert!(p.scale < 0.02); // min/max would give 1002 / 255 = 3.9
//! # Ok::<(), hybridq::Error>(())
//! ```

use crate::error::{check_finite, Error, Result};
use crate::toolkit::affine::{AffineParams, QuantType};

/// Something that watches values and proposes a float range.
pub trait Observer {
    /// Records a batch of values.
    ///
    /// Errors: a NaN or infinite value ([`Error::NonFinite`]); nothing is recorded then.
    fn observe(&mut self, values: &[f32]) -> Result<()>;

    /// The proposed range `(min, max)`, or `None` before any value was seen.
    fn range(&self) -> Option<(f32, f32)>;

    /// The quantization parameters of the proposed range ([`AffineParams::from_range`], which
    /// widens it to contain 0).
    ///
    /// Errors: nothing observed yet ([`Error::InvalidArgument`]).
    fn params(&self, ty: QuantType, narrow_range: bool) -> Result<AffineParams> {
        let (lo, hi) = self
            .range()
            .ok_or_else(|| Error::invalid("Observer::params", "no values have been observed"))?;
        AffineParams::from_range(lo as f64, hi as f64, ty, narrow_range)
    }
}

fn batch_min_max(op: &'static str, values: &[f32]) -> Result<Option<(f32, f32)>> {
    check_finite(op, "values", values)?;
    Ok(values.iter().fold(None, |acc, &v| match acc {
        None => Some((v, v)),
        Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
    }))
}

/// The running minimum and maximum of everything observed.
///
/// ```
/// use hybridq::toolkit::calibration::{MinMaxObserver, Observer};
/// let mut o = MinMaxObserver::new();
/// assert_eq!(o.range(), None);
/// o.observe(&[1.0, -3.0])?;
/// o.observe(&[2.5])?;
/// assert_eq!(o.range(), Some((-3.0, 2.5)));
/// # Ok::<(), hybridq::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct MinMaxObserver {
    range: Option<(f32, f32)>,
}

impl MinMaxObserver {
    /// An observer that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Observer for MinMaxObserver {
    fn observe(&mut self, values: &[f32]) -> Result<()> {
        if let Some((lo, hi)) = batch_min_max("MinMaxObserver::observe", values)? {
            self.range = Some(match self.range {
                None => (lo, hi),
                Some((a, b)) => (a.min(lo), b.max(hi)),
            });
        }
        Ok(())
    }

    fn range(&self) -> Option<(f32, f32)> {
        self.range
    }
}

/// An exponential moving average of the batch minima and maxima:
/// `min <- min + c * (batch_min - min)` (the first batch sets them).
///
/// ```
/// use hybridq::toolkit::calibration::{MovingAverageMinMaxObserver, Observer};
/// let mut o = MovingAverageMinMaxObserver::new(0.5)?;
/// o.observe(&[-1.0, 1.0])?;
/// o.observe(&[-3.0, 5.0])?;
/// assert_eq!(o.range(), Some((-2.0, 3.0)));
/// assert!(MovingAverageMinMaxObserver::new(0.0).is_err());
/// # Ok::<(), hybridq::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct MovingAverageMinMaxObserver {
    c: f32,
    range: Option<(f32, f32)>,
}

impl MovingAverageMinMaxObserver {
    /// An observer with averaging constant `c` in `(0, 1]` (PyTorch uses 0.01).
    ///
    /// Errors: `c` outside `(0, 1]` ([`Error::InvalidArgument`]).
    pub fn new(c: f32) -> Result<Self> {
        if !(c > 0.0 && c <= 1.0) {
            return Err(Error::invalid(
                "MovingAverageMinMaxObserver::new",
                format!("the averaging constant must be in (0, 1], got {c}"),
            ));
        }
        Ok(Self { c, range: None })
    }
}

impl Observer for MovingAverageMinMaxObserver {
    fn observe(&mut self, values: &[f32]) -> Result<()> {
        if let Some((lo, hi)) = batch_min_max("MovingAverageMinMaxObserver::observe", values)? {
            self.range = Some(match self.range {
                None => (lo, hi),
                Some((a, b)) => (a + self.c * (lo - a), b + self.c * (hi - b)),
            });
        }
        Ok(())
    }

    fn range(&self) -> Option<(f32, f32)> {
        self.range
    }
}

/// Magnitude bins per sign: the top 14 bits of an f32's magnitude (8 exponent bits and 6
/// mantissa bits), so every bin is at most 1/64 (1.6%) of its values wide, at any magnitude.
pub const HISTOGRAM_BINS: usize = 1 << 14;

const BIN_SHIFT: u32 = 17;

/// A histogram of every observed value in log-linear bins (each at most 1.6% of its magnitude
/// wide, see [`HISTOGRAM_BINS`]); the range is cut at the `percentile` and `100 - percentile`
/// of the counts, widened to whole bins, and never reaches past the true minimum and maximum.
/// An outlier thus costs one count, not a stretched scale.
#[derive(Clone, Debug)]
pub struct HistogramObserver {
    percentile: f64,
    /// Counts of negative values by magnitude bin.
    negative: Vec<u64>,
    /// Counts of zero and positive values by magnitude bin.
    positive: Vec<u64>,
    total: u64,
    min_max: Option<(f32, f32)>,
}

impl HistogramObserver {
    /// An observer cutting at `percentile` (for example 99.99); values outside `[50, 100]` are
    /// clamped into it.
    pub fn new(percentile: f64) -> Self {
        let percentile = if percentile.is_nan() {
            100.0
        } else {
            percentile.clamp(50.0, 100.0)
        };
        Self {
            percentile,
            negative: vec![0; HISTOGRAM_BINS],
            positive: vec![0; HISTOGRAM_BINS],
            total: 0,
            min_max: None,
        }
    }

    /// The upper edge of magnitude bin `b`.
    fn upper_edge(b: usize) -> f32 {
        f32::from_bits(((b as u32 + 1) << BIN_SHIFT).min(0x7f80_0000))
    }
}

impl Observer for HistogramObserver {
    fn observe(&mut self, values: &[f32]) -> Result<()> {
        let Some((lo, hi)) = batch_min_max("HistogramObserver::observe", values)? else {
            return Ok(());
        };
        for &v in values {
            let b = (v.abs().to_bits() >> BIN_SHIFT) as usize;
            if v < 0.0 {
                self.negative[b] += 1;
            } else {
                self.positive[b] += 1;
            }
        }
        self.total += values.len() as u64;
        self.min_max = Some(match self.min_max {
            None => (lo, hi),
            Some((a, b)) => (a.min(lo), b.max(hi)),
        });
        Ok(())
    }

    fn range(&self) -> Option<(f32, f32)> {
        let (true_lo, true_hi) = self.min_max?;
        let tail = ((1.0 - self.percentile / 100.0) * self.total as f64).floor() as u64;
        // Values in ascending order: negative bins by falling magnitude, then positive bins.
        let ascending = self
            .negative
            .iter()
            .enumerate()
            .rev()
            .map(|(b, &c)| (-Self::upper_edge(b), c))
            .chain(
                self.positive
                    .iter()
                    .enumerate()
                    .map(|(b, &c)| (Self::upper_edge(b), c)),
            );
        let mut acc = 0;
        let mut lo = true_lo;
        for (edge, c) in ascending {
            acc += c;
            if acc > tail {
                // the lowest kept bin: its lower edge (the negative edge is already the lower)
                lo = if edge < 0.0 { edge } else { 0.0 };
                break;
            }
        }
        let descending = self
            .positive
            .iter()
            .enumerate()
            .rev()
            .map(|(b, &c)| (Self::upper_edge(b), c))
            .chain(
                self.negative
                    .iter()
                    .enumerate()
                    .map(|(b, &c)| (-Self::upper_edge(b), c)),
            );
        let mut acc = 0;
        let mut hi = true_hi;
        for (edge, c) in descending {
            acc += c;
            if acc > tail {
                hi = if edge > 0.0 { edge } else { 0.0 };
                break;
            }
        }
        Some((lo.max(true_lo), hi.min(true_hi)))
    }
}
