//! Where the accuracy goes: [`AccuracyProbe`] runs each quantized layer beside its float
//! reference on the inputs a pipeline actually gives it, and reports per layer the output
//! SQNR, cosine and max abs error, and the input's outlier ratio; [`Policy::keep_worst_in_float`]
//! turns a report into a policy that keeps the worst layers in float under an error budget.

use std::collections::BTreeMap;

use super::policy::{Override, Policy};
use crate::error::{Error, Result};
use crate::layer::{Linear, Mode, Scratch};

/// Sums of one layer's comparisons so far (f64).
#[derive(Clone, Debug, Default)]
struct Sums {
    signal: f64,
    noise: f64,
    dot: f64,
    got_sq: f64,
    max_abs: f64,
    input_max_abs: f64,
    input_sq: f64,
    input_count: usize,
    rows: usize,
}

/// One layer's accuracy over every call observed.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerAccuracy {
    /// The layer's name.
    pub name: String,
    /// `10 log10(sum ref^2 / sum (got - ref)^2)` over every output (infinite when exact).
    pub sqnr_db: f64,
    /// Cosine between the quantized and the float outputs, all outputs as one vector.
    pub cosine: f64,
    /// Largest absolute output difference.
    pub max_abs: f64,
    /// The input's `max |x| / rms(x)`: large values mean a few outliers set the per-row
    /// quantization step for all the others.
    pub outlier_ratio: f64,
    /// Rows observed.
    pub rows: usize,
}

/// Runs quantized layers beside float references on real inputs and accumulates the error of
/// each, by layer name.
///
/// ```
/// use hybridq::model::AccuracyProbe;
/// use hybridq::{build_linear, LinearOptions, Mode};
/// use ndarray::Array2;
/// let w = Array2::from_shape_fn((32, 64), |(n, k)| ((n * 7 + k * 3) % 13) as f32 / 13.0 - 0.5);
/// let float = build_linear(w.view(), None, &LinearOptions::new(Mode::Float), None)?;
/// let hybrid = build_linear(w.view(), None, &LinearOptions::new(Mode::Hybrid), None)?;
/// let x = Array2::from_shape_fn((4, 64), |(b, k)| ((b + k) % 5) as f32 - 2.0);
/// let mut probe = AccuracyProbe::new();
/// let mut out = vec![0.0f32; 4 * 32];
/// probe.observe("fc", &*float, &*hybrid, x.as_slice().unwrap(), 4, &mut out)?;
/// let report = probe.report();
/// assert!(report[0].sqnr_db > 30.0 && report[0].cosine > 0.999);
/// // `out` holds the quantized layer's output, for the pipeline to go on with.
/// # Ok::<(), hybridq::Error>(())
/// ```
#[derive(Debug, Default)]
pub struct AccuracyProbe {
    layers: BTreeMap<String, Sums>,
    reference_out: Vec<f32>,
    scratch: Scratch,
}

impl AccuracyProbe {
    /// An empty probe.
    pub fn new() -> Self {
        AccuracyProbe::default()
    }

    /// Runs `layer` on `rows` rows of `x` into `out` (what the pipeline goes on with) and
    /// `reference` on the same rows, and adds the comparison to layer `name`'s sums.
    ///
    /// Errors: the layers' (shapes, non-finite inputs), and [`Error::ShapeMismatch`] when the
    /// two layers' shapes differ.
    pub fn observe(
        &mut self,
        name: &str,
        reference: &dyn Linear,
        layer: &dyn Linear,
        x: &[f32],
        rows: usize,
        out: &mut [f32],
    ) -> Result<()> {
        let shape = |l: &dyn Linear| (l.in_features(), l.out_features());
        if shape(reference) != shape(layer) {
            return Err(Error::shape(
                "AccuracyProbe::observe",
                format!("{:?}", shape(reference)),
                format!("{:?}", shape(layer)),
            ));
        }
        layer.forward_rows(x, rows, out, &mut self.scratch)?;
        let len = rows * layer.out_features();
        self.reference_out.resize(len, 0.0);
        reference.forward_rows(x, rows, &mut self.reference_out, &mut self.scratch)?;
        let s = self.layers.entry(name.to_string()).or_default();
        for (&r, &g) in self.reference_out.iter().zip(&out[..len]) {
            let (r, g) = (r as f64, g as f64);
            s.signal += r * r;
            s.noise += (g - r) * (g - r);
            s.dot += r * g;
            s.got_sq += g * g;
            s.max_abs = s.max_abs.max((g - r).abs());
        }
        for &v in &x[..rows * layer.in_features()] {
            let v = v as f64;
            s.input_max_abs = s.input_max_abs.max(v.abs());
            s.input_sq += v * v;
        }
        s.input_count += rows * layer.in_features();
        s.rows += rows;
        Ok(())
    }

    /// Every layer observed, by name.
    pub fn report(&self) -> Vec<LayerAccuracy> {
        self.layers
            .iter()
            .map(|(name, s)| LayerAccuracy {
                name: name.clone(),
                sqnr_db: if s.noise == 0.0 {
                    f64::INFINITY
                } else {
                    10.0 * (s.signal / s.noise).log10()
                },
                cosine: if s.signal == 0.0 || s.got_sq == 0.0 {
                    if s.noise == 0.0 {
                        1.0
                    } else {
                        0.0
                    }
                } else {
                    s.dot / (s.signal.sqrt() * s.got_sq.sqrt())
                },
                max_abs: s.max_abs,
                outlier_ratio: if s.input_sq == 0.0 {
                    0.0
                } else {
                    s.input_max_abs / (s.input_sq / s.input_count as f64).sqrt()
                },
                rows: s.rows,
            })
            .collect()
    }
}

impl Policy {
    /// This policy with the worst layers of `report` kept in float: every layer whose output
    /// SQNR is below `min_sqnr_db`, worst first, at most `max_float` of them. The layer names
    /// of the report are matched to weights as `<name>.weight`.
    ///
    /// ```
    /// use hybridq::model::{LayerAccuracy, Policy};
    /// use hybridq::Mode;
    /// let row = |name: &str, sqnr_db| LayerAccuracy { name: name.into(), sqnr_db, cosine: 1.0,
    ///     max_abs: 0.0, outlier_ratio: 1.0, rows: 1 };
    /// let report = [row("a", 45.0), row("b", 18.0), row("c", 25.0)];
    /// let p = Policy::default().keep_worst_in_float(&report, 30.0, 1);
    /// assert_eq!(p.decide("b.weight", &[64, 64]).0, Mode::Float);
    /// assert_eq!(p.decide("c.weight", &[64, 64]).0, Mode::Hybrid); // the budget is one layer
    /// ```
    pub fn keep_worst_in_float(
        &self,
        report: &[LayerAccuracy],
        min_sqnr_db: f64,
        max_float: usize,
    ) -> Policy {
        let mut worst: Vec<&LayerAccuracy> =
            report.iter().filter(|l| l.sqnr_db < min_sqnr_db).collect();
        worst.sort_by(|a, b| a.sqnr_db.total_cmp(&b.sqnr_db));
        let mut policy = self.clone();
        policy
            .overrides
            .extend(worst.into_iter().take(max_float).map(|l| Override {
                pattern: format!("{}.weight", l.name),
                mode: Some(Mode::Float),
                granularity: None,
            }));
        policy
    }
}
