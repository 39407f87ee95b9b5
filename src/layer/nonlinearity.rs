//! What follows a layer's product: TFLite's fused clamps ([`Activation`]) or, outside TFLite's
//! fused set, a GELU applied by the [`Activated`] wrapper.

use std::fmt;
use std::str::FromStr;

use super::{Linear, Scratch};
use crate::activation::Activation;
use crate::error::{Error, Result};

/// The GELU forms transformer pipelines use. Neither is one of TFLite's fused activations:
/// TFLite runs GELU as a separate op, so a layer with GELU is TFLite's layer (with no fused
/// activation) followed by this function, in f32, in the order given here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Gelu {
    /// `(0.5 * x) * (1 + erf(x * FRAC_1_SQRT_2))` (BERT's `gelu`, PyTorch's default), each
    /// step one f32 operation, with hybridq's own `erf`: `u = clamp(x, -4, 4)`,
    /// `min(u * P(u^2) / Q(u^2), 1)` with the coefficients of [`ERF_P`] and [`ERF_Q`] by Horner's
    /// rule in f32 (within 3.3e-7 of the true erf everywhere; `tools/fit_erf.py` made them). A
    /// division and a dozen multiply-adds that vectorize: `libm::erff` took about 30 ns a
    /// value, a third of MiniLM's time.
    Erf,
    /// `(0.5 * x) * (1 + tanh(SQRT_2_OVER_PI * (x + 0.044715 * (x * x * x))))` (GPT-2's
    /// `gelu_new`, PyTorch's `approximate="tanh"`), each step one f32 operation, `tanh` being
    /// `libm::tanhf`.
    Tanh,
}

/// The numerator of [`Gelu::Erf`]'s erf, lowest degree first (in `u^2`).
pub const ERF_P: [f32; 7] = [
    std::f32::consts::FRAC_2_SQRT_PI, // the fit lands on 2 / sqrt(pi), erf's slope at 0
    0.184_370_89,
    0.054_301_36,
    0.003_827_101_5,
    0.000_383_014_82,
    4.799_002_5e-6,
    -1.374_451_1e-8,
];

/// The denominator of [`Gelu::Erf`]'s erf, lowest degree first (in `u^2`).
pub const ERF_Q: [f32; 6] = [
    1.0,
    0.496_728_03,
    0.113_698_18,
    0.015_430_206,
    0.001_307_421,
    6.417_519e-5,
];

/// [`Gelu::Erf`]'s erf (see there).
///
/// ```
/// use hybridq::layer::erf;
/// for i in -500..=500 {
///     let x = i as f32 / 100.0;
///     let e = erf(x);
///     assert!(e.abs() <= 1.0 && (e >= 0.0) == (x >= 0.0));
/// }
/// assert_eq!(erf(0.0), 0.0);
/// assert!((erf(1.0) - 0.842_700_8).abs() < 4e-7);
/// ```
#[inline]
pub fn erf(x: f32) -> f32 {
    let u = x.clamp(-4.0, 4.0);
    let t = u * u;
    let mut p = ERF_P[6];
    for &c in ERF_P[..6].iter().rev() {
        p = p * t + c;
    }
    let mut q = ERF_Q[5];
    for &c in ERF_Q[..5].iter().rev() {
        q = q * t + c;
    }
    (u * p / q).clamp(-1.0, 1.0)
}

impl Gelu {
    /// The function on one value, as the formula evaluates in f32: NaN stays NaN, +inf stays
    /// +inf, and -inf gives NaN in both forms (`-inf * 0`, as PyTorch's scalar formulas give).
    /// (`Tanh` calls `libm::tanhf`, about 20 ns a value; `Erf` is the fast one.)
    ///
    /// ```
    /// use hybridq::layer::Gelu;
    /// assert_eq!(Gelu::Erf.apply(0.0), 0.0);
    /// assert!((Gelu::Erf.apply(1.0) - 0.841_344_7).abs() < 1e-6);
    /// assert!((Gelu::Tanh.apply(1.0) - 0.841_192).abs() < 1e-6);
    /// assert!(Gelu::Tanh.apply(f32::NAN).is_nan());
    /// ```
    #[inline]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Gelu::Erf => (0.5 * x) * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2)),
            Gelu::Tanh => {
                const SQRT_2_OVER_PI: f32 = 0.797_884_6;
                let inner = x + 0.044715 * (x * x * x);
                (0.5 * x) * (1.0 + libm::tanhf(SQRT_2_OVER_PI * inner))
            }
        }
    }
}

/// What follows the product of a layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Nonlinearity {
    /// One of TFLite's fused activations, applied inside the layer's epilogue.
    Fused(Activation),
    /// A GELU after the layer's output ([`Activated`]); not in TFLite's fused set.
    Gelu(Gelu),
}

impl Default for Nonlinearity {
    fn default() -> Self {
        Nonlinearity::Fused(Activation::None)
    }
}

impl From<Activation> for Nonlinearity {
    fn from(a: Activation) -> Self {
        Nonlinearity::Fused(a)
    }
}

impl From<Gelu> for Nonlinearity {
    fn from(g: Gelu) -> Self {
        Nonlinearity::Gelu(g)
    }
}

impl Nonlinearity {
    /// Every nonlinearity, TFLite's four first.
    pub const ALL: [Nonlinearity; 6] = [
        Nonlinearity::Fused(Activation::None),
        Nonlinearity::Fused(Activation::Relu),
        Nonlinearity::Fused(Activation::ReluN1To1),
        Nonlinearity::Fused(Activation::Relu6),
        Nonlinearity::Gelu(Gelu::Erf),
        Nonlinearity::Gelu(Gelu::Tanh),
    ];

    /// The name used in files and on the command line (`none`, `relu`, `relu_n1_to_1`,
    /// `relu6`, `gelu`, `gelu_tanh`).
    ///
    /// ```
    /// use hybridq::Nonlinearity;
    /// for n in Nonlinearity::ALL {
    ///     assert_eq!(n.name().parse::<Nonlinearity>().unwrap(), n);
    /// }
    /// assert!("swish".parse::<Nonlinearity>().is_err());
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            Nonlinearity::Fused(Activation::None) => "none",
            Nonlinearity::Fused(Activation::Relu) => "relu",
            Nonlinearity::Fused(Activation::ReluN1To1) => "relu_n1_to_1",
            Nonlinearity::Fused(Activation::Relu6) => "relu6",
            Nonlinearity::Gelu(Gelu::Erf) => "gelu",
            Nonlinearity::Gelu(Gelu::Tanh) => "gelu_tanh",
        }
    }

    /// The function on one value.
    #[inline]
    pub fn apply(self, v: f32) -> f32 {
        match self {
            Nonlinearity::Fused(a) => a.apply(v),
            Nonlinearity::Gelu(g) => g.apply(v),
        }
    }
}

impl fmt::Display for Nonlinearity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Nonlinearity {
    type Err = Error;

    /// Parses [`Nonlinearity::name`]'s names; anything else is [`Error::InvalidArgument`].
    fn from_str(s: &str) -> Result<Self> {
        Nonlinearity::ALL
            .into_iter()
            .find(|n| n.name() == s.trim())
            .ok_or_else(|| {
                let names: Vec<_> = Nonlinearity::ALL.iter().map(|n| n.name()).collect();
                Error::invalid(
                    "Nonlinearity::from_str",
                    format!("unknown nonlinearity `{s}` (known: {})", names.join(", ")),
                )
            })
    }
}

/// A layer followed by a GELU: `gelu(inner(x))`, value by value, after the inner layer has
/// written its row outputs.
///
/// ```
/// use hybridq::layer::{Activated, Gelu};
/// use hybridq::{FloatLinear, Linear};
/// use ndarray::array;
/// let w = array![[1.0f32, -1.0], [0.5, 0.5]];
/// let plain = FloatLinear::new(w.view(), None, Default::default())?;
/// let gelu = Activated::new(Box::new(plain.clone()), Gelu::Erf)?;
/// let x = array![[0.5f32, 2.0]];
/// let (y, z) = (plain.forward(x.view())?, gelu.forward(x.view())?);
/// assert_eq!(z[[0, 0]], Gelu::Erf.apply(y[[0, 0]]));
/// # Ok::<(), hybridq::Error>(())
/// ```
pub struct Activated {
    inner: Box<dyn Linear>,
    gelu: Gelu,
}

impl Activated {
    /// Wraps `inner`, which must have no fused activation (a clamp then a GELU is not a form
    /// any pipeline uses, and would hide a mistake).
    ///
    /// Errors: [`Error::InvalidArgument`] if `inner` has a fused activation.
    pub fn new(inner: Box<dyn Linear>, gelu: Gelu) -> Result<Self> {
        if inner.activation() != Activation::None {
            return Err(Error::invalid(
                "Activated::new",
                format!(
                    "the inner layer already has the fused activation {:?}",
                    inner.activation()
                ),
            ));
        }
        Ok(Activated { inner, gelu })
    }

    /// The wrapped layer.
    pub fn inner(&self) -> &dyn Linear {
        &*self.inner
    }

    /// The GELU form.
    pub fn gelu(&self) -> Gelu {
        self.gelu
    }
}

impl fmt::Debug for Activated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Activated({:?}, {} -> {}, {})",
            self.gelu,
            self.inner.in_features(),
            self.inner.out_features(),
            self.inner.kernel_name()
        )
    }
}

impl Linear for Activated {
    fn in_features(&self) -> usize {
        self.inner.in_features()
    }

    fn out_features(&self) -> usize {
        self.inner.out_features()
    }

    fn activation(&self) -> Activation {
        Activation::None
    }

    fn nonlinearity(&self) -> Nonlinearity {
        Nonlinearity::Gelu(self.gelu)
    }

    fn threads(&self) -> usize {
        self.inner.threads()
    }

    fn set_threads(&mut self, threads: usize) {
        self.inner.set_threads(threads);
    }

    fn weight_bytes(&self) -> usize {
        self.inner.weight_bytes()
    }

    fn kernel_name(&self) -> &'static str {
        self.inner.kernel_name()
    }

    fn forward_rows(
        &self,
        x: &[f32],
        rows: usize,
        out: &mut [f32],
        scratch: &mut Scratch,
    ) -> Result<()> {
        self.inner.forward_rows(x, rows, out, scratch)?;
        let n = rows * self.inner.out_features();
        // One loop per form, so that each compiles to vector code, on the CPU's widest vectors
        // (the same bits at every width).
        let lanes = crate::kernels::elementwise::Lanes::detect();
        match self.gelu {
            Gelu::Erf => lanes.map(&mut out[..n], |v| Gelu::Erf.apply(v)),
            Gelu::Tanh => lanes.map(&mut out[..n], |v| Gelu::Tanh.apply(v)),
        }
        Ok(())
    }
}
