//! Checking a golden case: weight quantization and both flavours, bit for bit, and the error
//! against float.

use std::fmt;

use ndarray::ArrayViewD;

use crate::error::Result;
use crate::fixture::{Case, HybridCase, IntegerCase};
use crate::flavour::Flavour;
use crate::integer::{IntegerLinear, TensorQuant};
use crate::layer::{HybridConfig, HybridLinear, Linear};
use crate::quantize::weights::{Granularity, QuantizedWeights};
use crate::stats::ErrorStats;
use crate::toolkit::fixed_point::Rounding;

/// How many values of an output differ from the expected ones, bit for bit.
#[derive(Clone, Debug, PartialEq)]
pub struct BitComparison {
    /// Values compared.
    pub total: usize,
    /// Values whose bits differ.
    pub mismatches: usize,
    /// The first differing value: flat index, expected, got.
    pub first: Option<(usize, f32, f32)>,
}

impl BitComparison {
    /// Compares `got` with `expected` bit for bit (so `-0.0 != 0.0`, and NaN equals only the
    /// same NaN).
    pub fn of(expected: ArrayViewD<'_, f32>, got: &[f32]) -> Self {
        let mut mismatches = 0;
        let mut first = None;
        for (i, (&e, &g)) in expected.iter().zip(got).enumerate() {
            if e.to_bits() != g.to_bits() {
                mismatches += 1;
                first.get_or_insert((i, e, g));
            }
        }
        Self {
            total: expected.len(),
            mismatches,
            first,
        }
    }

    /// Whether every value matched.
    pub fn passed(&self) -> bool {
        self.mismatches == 0
    }
}

impl fmt::Display for BitComparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.total - self.mismatches, self.total)?;
        if let Some((i, e, g)) = self.first {
            write!(
                f,
                " (first diff at {i}: expected {e:e} [{:#010x}], got {g:e} [{:#010x}])",
                e.to_bits(),
                g.to_bits()
            )?;
        }
        Ok(())
    }
}

/// The outcome of checking one hybrid case.
#[derive(Clone, Debug)]
pub struct HybridReport {
    /// Quantizing `weights` reproduced `weights_q` (value by value).
    pub weights_q: BitComparison,
    /// Quantizing `weights` reproduced `weight_scales` (bit for bit).
    pub weight_scales: BitComparison,
    /// The flavour checked against `expected`.
    pub flavour: Flavour,
    /// That flavour's output against `expected`.
    pub tflite: BitComparison,
    /// The flavour checked against `expected_xnnpack`.
    pub xnnpack_flavour: Flavour,
    /// That flavour's output against `expected_xnnpack`.
    pub xnnpack: BitComparison,
    /// The built-in flavour's output against `expected_float`.
    pub vs_float: ErrorStats,
}

impl HybridReport {
    /// Whether every bit-exact comparison passed.
    pub fn passed(&self) -> bool {
        self.weights_q.passed()
            && self.weight_scales.passed()
            && self.tflite.passed()
            && self.xnnpack.passed()
    }
}

impl fmt::Display for HybridReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let wq_ok = self.weights_q.passed() && self.weight_scales.passed();
        write!(
            f,
            "weights {}",
            if wq_ok {
                "ok".to_string()
            } else {
                format!("q {} scales {}", self.weights_q, self.weight_scales)
            }
        )?;
        write!(
            f,
            ", {} {}, {} {}, vs float: {}",
            self.flavour, self.tflite, self.xnnpack_flavour, self.xnnpack, self.vs_float
        )
    }
}

/// The outcome of checking one full-integer case.
#[derive(Clone, Debug)]
pub struct IntegerReport {
    /// Values of `expected_q`.
    pub total: usize,
    /// Values where hybridq's output (ruy rounding) differs from `expected_q`.
    pub mismatches: usize,
    /// The first difference: flat index, expected, got.
    pub first: Option<(usize, i8, i8)>,
    /// Values of `expected_q` at -128 or 127 (saturated, or clamped by the activation there).
    pub saturated: usize,
    /// Values where gemmlowp's double rounding would give another output (negative ties of
    /// the final shift); information only, shows whether the case tells ruy from gemmlowp.
    pub gemmlowp_differs: usize,
}

impl IntegerReport {
    /// Whether every value matched.
    pub fn passed(&self) -> bool {
        self.mismatches == 0
    }
}

impl fmt::Display for IntegerReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "int8 {}/{} bit-exact",
            self.total - self.mismatches,
            self.total
        )?;
        if let Some((i, e, g)) = self.first {
            write!(f, " (first diff at {i}: expected {e}, got {g})")?;
        }
        write!(
            f,
            ", saturated {}, gemmlowp rounding would differ in {}",
            self.saturated, self.gemmlowp_differs
        )
    }
}

/// The report of any kind of case.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum CaseReport {
    /// A hybrid case.
    Hybrid(HybridReport),
    /// A full-integer case.
    Integer(IntegerReport),
}

impl CaseReport {
    /// Whether every bit-exact comparison passed.
    pub fn passed(&self) -> bool {
        match self {
            CaseReport::Hybrid(r) => r.passed(),
            CaseReport::Integer(r) => r.passed(),
        }
    }
}

impl fmt::Display for CaseReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaseReport::Hybrid(r) => r.fmt(f),
            CaseReport::Integer(r) => r.fmt(f),
        }
    }
}

/// Which flavours a hybrid case is checked with. `None` takes the flavour the case file names
/// (its `flavour` / `xnnpack_flavour` keys), else [`Flavour::TfliteX86`] /
/// [`Flavour::Xnnpack`].
///
/// ```
/// use hybridq::check::CheckOptions;
/// use hybridq::Flavour;
/// let o = CheckOptions { flavour: Some(Flavour::TfliteArm64), ..CheckOptions::default() };
/// assert_eq!(o.xnnpack_flavour, None);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckOptions {
    /// The flavour checked against `expected`.
    pub flavour: Option<Flavour>,
    /// The flavour checked against `expected_xnnpack`.
    pub xnnpack_flavour: Option<Flavour>,
}

/// Runs every check of a case, with the flavours the case names (or the x86-64 defaults).
pub fn check_case(case: &Case) -> Result<CaseReport> {
    check_case_with(case, CheckOptions::default())
}

/// Runs every check of a case with the given flavours.
pub fn check_case_with(case: &Case, options: CheckOptions) -> Result<CaseReport> {
    match case {
        Case::Hybrid(c) => check_hybrid_with(c, options).map(CaseReport::Hybrid),
        Case::Integer(c) => check_integer(c).map(CaseReport::Integer),
    }
}

/// Builds the [`IntegerLinear`] of a full-integer case with the given rounding.
pub fn integer_layer(case: &IntegerCase, rounding: Rounding) -> Result<IntegerLinear> {
    let scales = case.weight_scales.to_vec();
    Ok(IntegerLinear::new(
        case.weights_q.view(),
        &scales,
        case.bias_q.as_ref().map(|b| b.view()),
        TensorQuant::new(case.input_scale, case.input_zero_point)?,
        TensorQuant::new(case.output_scale, case.output_zero_point)?,
        case.activation,
    )?
    .with_rounding(rounding))
}

/// Checks a full-integer case: [`IntegerLinear`] with ruy rounding (TFLite's optimized x86-64
/// kernel) against `expected_q`, value by value.
pub fn check_integer(case: &IntegerCase) -> Result<IntegerReport> {
    let shape = case.input_q.shape();
    let rows: usize = shape[..shape.len().saturating_sub(1)].iter().product();
    let x: Vec<i8> = case.input_q.iter().copied().collect();
    let run = |rounding| -> Result<Vec<i8>> {
        let layer = integer_layer(case, rounding)?;
        let mut out = vec![0i8; rows * case.n()];
        layer.forward_q_rows(&x, rows, &mut out)?;
        Ok(out)
    };
    let ours = run(Rounding::Ruy)?;
    let gemmlowp = run(Rounding::Gemmlowp)?;
    let mut mismatches = 0;
    let mut first = None;
    for (i, (&e, &g)) in case.expected_q.iter().zip(&ours).enumerate() {
        if e != g {
            mismatches += 1;
            first.get_or_insert((i, e, g));
        }
    }
    Ok(IntegerReport {
        total: case.expected_q.len(),
        mismatches,
        first,
        saturated: case
            .expected_q
            .iter()
            .filter(|&&v| v == i8::MIN || v == i8::MAX)
            .count(),
        gemmlowp_differs: ours.iter().zip(&gemmlowp).filter(|(a, b)| a != b).count(),
    })
}

/// Checks a hybrid case with the flavours it names ([`check_hybrid_with`]).
pub fn check_hybrid(case: &HybridCase) -> Result<HybridReport> {
    check_hybrid_with(case, CheckOptions::default())
}

/// Checks a hybrid case: (a) weight quantization, (b) the built-in flavour (`TfliteX86`
/// unless the options or the case say otherwise) against `expected`, (c) the XNNPACK flavour
/// against `expected_xnnpack`, (d) the error against `expected_float`. The layers are built
/// from the case's own `weights_q` and `weight_scales`, so (b) and (c) do not depend on (a).
pub fn check_hybrid_with(case: &HybridCase, options: CheckOptions) -> Result<HybridReport> {
    let flavour = options
        .flavour
        .or(case.flavour)
        .unwrap_or(Flavour::TfliteX86);
    let xnnpack_flavour = options
        .xnnpack_flavour
        .or(case.xnnpack_flavour)
        .unwrap_or(Flavour::Xnnpack);
    let granularity = if case.weight_scales.len() == case.n() && case.n() > 1 {
        Granularity::PerChannel
    } else {
        Granularity::PerTensor
    };
    let ours = QuantizedWeights::quantize(case.weights.view(), granularity)?;
    let ours_q: Vec<f32> = ours.values().iter().map(|&v| v as f32).collect();
    let weights_q = BitComparison::of(case.weights_q.mapv(|v| v as f32).view().into_dyn(), &ours_q);
    let weight_scales = BitComparison::of(case.weight_scales.view().into_dyn(), ours.scales());

    let given = QuantizedWeights::from_parts(
        case.weights_q.view(),
        case.weight_scales
            .as_slice()
            .unwrap_or(&case.weight_scales.to_vec()),
    )?;
    let run = |flavour: Flavour| -> Result<Vec<f32>> {
        let config = HybridConfig {
            asymmetric_inputs: case.asymmetric_inputs,
            activation: case.activation,
            flavour,
            ..HybridConfig::default()
        };
        let layer = HybridLinear::new(given.clone(), case.bias.as_ref().map(|b| b.view()), config)?;
        Ok(layer.forward(case.input.view())?.into_iter().collect())
    };
    let tflite_out = run(flavour)?;
    let xnnpack_out = run(xnnpack_flavour)?;
    let float_ref: Vec<f32> = case.expected_float.iter().copied().collect();
    Ok(HybridReport {
        weights_q,
        weight_scales,
        flavour,
        tflite: BitComparison::of(case.expected.view(), &tflite_out),
        xnnpack_flavour,
        xnnpack: BitComparison::of(case.expected_xnnpack.view(), &xnnpack_out),
        vs_float: ErrorStats::compare(&float_ref, &tflite_out),
    })
}
