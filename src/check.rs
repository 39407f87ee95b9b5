//! Checking a golden case: weight quantization and both flavours, bit for bit, and the error
//! against float.

use std::fmt;

use ndarray::ArrayViewD;

use crate::error::Result;
use crate::fixture::{Case, HybridCase};
use crate::flavour::Flavour;
use crate::layer::{HybridConfig, HybridLinear, Linear};
use crate::quantize::weights::{Granularity, QuantizedWeights};
use crate::stats::ErrorStats;

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
    /// The `TfliteX86` flavour against `expected`.
    pub tflite: BitComparison,
    /// The `Xnnpack` flavour against `expected_xnnpack`.
    pub xnnpack: BitComparison,
    /// The `TfliteX86` output against `expected_float`.
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
            ", tflite {}, xnnpack {}, vs float: {}",
            self.tflite, self.xnnpack, self.vs_float
        )
    }
}

/// Runs every check of a case.
pub fn check_case(case: &Case) -> Result<HybridReport> {
    match case {
        Case::Hybrid(c) => check_hybrid(c),
    }
}

/// Checks a hybrid case: (a) weight quantization, (b) the `TfliteX86` flavour against
/// `expected`, (c) the `Xnnpack` flavour against `expected_xnnpack`, (d) the error against
/// `expected_float`. The layers are built from the case's own `weights_q` and
/// `weight_scales`, so (b) and (c) do not depend on (a).
pub fn check_hybrid(case: &HybridCase) -> Result<HybridReport> {
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
    let tflite_out = run(Flavour::TfliteX86)?;
    let xnnpack_out = run(Flavour::Xnnpack)?;
    let float_ref: Vec<f32> = case.expected_float.iter().copied().collect();
    Ok(HybridReport {
        weights_q,
        weight_scales,
        tflite: BitComparison::of(case.expected.view(), &tflite_out),
        xnnpack: BitComparison::of(case.expected_xnnpack.view(), &xnnpack_out),
        vs_float: ErrorStats::compare(&float_ref, &tflite_out),
    })
}
