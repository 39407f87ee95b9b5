//! Which tensors of a model become which kind of layer: [`Policy`], applied to a
//! [`TensorSet`] to give a [`QuantizedModel`] and a per-layer [`WeightReport`].

use ndarray::ArrayView2;

use super::quantized::{LayerWeights, ModelLayer, QuantizedModel};
use super::tensors::{FloatTensor, TensorSet};
use crate::error::{Error, Result};
use crate::flavour::Flavour;
use crate::layer::Mode;
use crate::quantize::weights::Granularity;
use crate::stats::ErrorStats;

/// TFLite's converter keeps weight tensors with fewer elements than this in float
/// (`min_elements_for_weights`, 1024 by default).
pub const TFLITE_MIN_ELEMENTS: usize = 1024;

/// Whether `name` matches the glob `pattern`: `*` stands for any run of characters (none
/// included), `?` for one; everything else matches itself.
///
/// ```
/// use hybridq::model::policy::glob_match;
/// assert!(glob_match("*.weight", "encoder.layer.0.attention.self.query.weight"));
/// assert!(glob_match("encoder.layer.?.*", "encoder.layer.3.output.dense.bias"));
/// assert!(!glob_match("*embeddings*", "encoder.layer.0.output.dense.weight"));
/// assert!(glob_match("*", ""));
/// ```
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut i, mut j) = (0, 0);
    // The last `*` seen and the name position it was tried at: on a mismatch, that star takes
    // one more character (linear backtracking, enough for globs without character classes).
    let mut star: Option<(usize, usize)> = None;
    while j < n.len() {
        if i < p.len() && (p[i] == '?' || p[i] == n[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some((i, j));
            i += 1;
        } else if let Some((si, sj)) = star {
            i = si + 1;
            j = sj + 1;
            star = Some((si, sj + 1));
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == '*')
}

/// A per-tensor exception to the policy's default: for weights whose name matches `pattern`,
/// another mode and/or granularity. Later overrides win over earlier ones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Override {
    /// A glob over weight tensor names ([`glob_match`]).
    pub pattern: String,
    /// The mode, if it differs from the default.
    pub mode: Option<Mode>,
    /// The granularity, if it differs from the default.
    pub granularity: Option<Granularity>,
}

impl std::str::FromStr for Override {
    type Err = Error;

    /// Parses `GLOB=MODE[:GRANULARITY]`; `MODE` may be empty to change the granularity alone.
    ///
    /// ```
    /// use hybridq::model::Override;
    /// use hybridq::{Granularity, Mode};
    /// let o: Override = "*.output.dense.weight=f16".parse()?;
    /// assert_eq!((o.mode, o.granularity), (Some(Mode::Float16), None));
    /// let o: Override = "*query*=:per-tensor".parse()?;
    /// assert_eq!((o.mode, o.granularity), (None, Some(Granularity::PerTensor)));
    /// assert!("no-equals-sign".parse::<Override>().is_err());
    /// # Ok::<(), hybridq::Error>(())
    /// ```
    fn from_str(s: &str) -> Result<Self> {
        let (pattern, rest) = s.split_once('=').ok_or_else(|| {
            Error::invalid(
                "Override::from_str",
                format!("`{s}`: expected GLOB=MODE[:GRANULARITY]"),
            )
        })?;
        let (mode, granularity) = match rest.split_once(':') {
            Some((m, g)) => (m, Some(g.parse::<Granularity>()?)),
            None => (rest, None),
        };
        let mode = if mode.is_empty() {
            None
        } else {
            Some(mode.parse::<Mode>()?)
        };
        Ok(Override {
            pattern: pattern.to_string(),
            mode,
            granularity,
        })
    }
}

/// How a whole model is quantized.
///
/// A tensor is a dense layer's weight when it has rank 2 and its name matches one of
/// `weights`; its bias is the rank-1 tensor of the same name with the last `weight` replaced
/// by `bias`, when there is one of length N. Each layer weight gets the default mode and
/// granularity, unless it matches `keep_float` or has fewer than `min_elements` elements
/// (then it stays float), or an [`Override`] says otherwise. Every other tensor is kept as it
/// was.
///
/// ```
/// use hybridq::model::policy::Policy;
/// use hybridq::Mode;
/// let p = Policy::default();
/// assert_eq!(p.mode, Mode::Hybrid);
/// assert_eq!(p.decide("encoder.layer.0.output.dense.weight", &[384, 1536]).0, Mode::Hybrid);
/// assert_eq!(p.decide("pooler.dense.weight", &[16, 16]).0, Mode::Float); // < 1024 elements
/// assert_eq!(p.decide("embeddings.word_embeddings.weight", &[30522, 384]).0, Mode::Float);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    /// The mode of every layer weight the rules do not keep in float.
    pub mode: Mode,
    /// The weight granularity of the int8 modes.
    pub granularity: Granularity,
    /// Globs of the names of dense layers' weights (default `*weight`).
    pub weights: Vec<String>,
    /// Globs of weights kept in float whatever their size (default `*embeddings*`: embedding
    /// tables are looked up, not multiplied).
    pub keep_float: Vec<String>,
    /// Weights with fewer elements stay float ([`TFLITE_MIN_ELEMENTS`] by default).
    pub min_elements: usize,
    /// Per-tensor exceptions, applied in order after the rules above.
    pub overrides: Vec<Override>,
    /// The flavour recorded as the model's default.
    pub flavour: Flavour,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            mode: Mode::Hybrid,
            granularity: Granularity::PerChannel,
            weights: vec!["*weight".into()],
            keep_float: vec!["*embeddings*".into()],
            min_elements: TFLITE_MIN_ELEMENTS,
            overrides: Vec::new(),
            flavour: Flavour::default(),
        }
    }
}

/// Why a layer weight got its mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The policy's default mode.
    Default,
    /// It matched a `keep_float` glob.
    KeptByPattern,
    /// It has fewer than `min_elements` elements.
    TooSmall,
    /// An [`Override`] set it.
    Override,
}

impl Reason {
    /// A short description for tables.
    pub fn describe(self) -> &'static str {
        match self {
            Reason::Default => "default",
            Reason::KeptByPattern => "kept (pattern)",
            Reason::TooSmall => "kept (small)",
            Reason::Override => "override",
        }
    }
}

/// What happened to one layer weight: the numbers of `hybridq quantize`'s table.
#[derive(Clone, Debug, PartialEq)]
pub struct WeightReport {
    /// The layer's name (the weight's name without its last `.weight`).
    pub layer: String,
    /// The weight's shape `[N, K]`.
    pub shape: [usize; 2],
    /// The mode it is stored in.
    pub mode: Mode,
    /// The granularity (int8 modes).
    pub granularity: Granularity,
    /// Why.
    pub reason: Reason,
    /// Bytes of the weight (and its bias) as the source stored them.
    pub bytes_before: usize,
    /// Bytes as the quantized model stores them (values, scales, bias).
    pub bytes_after: usize,
    /// The stored weight against the source: SQNR (dB; infinite when exact) and max abs error.
    pub error: ErrorStats,
}

impl Policy {
    /// The mode and granularity the policy gives the layer weight `name` of `shape`, and why.
    /// (A name that is not a layer weight by `weights` is not asked about.)
    pub fn decide(&self, name: &str, shape: &[usize]) -> (Mode, Granularity, Reason) {
        let elements: usize = shape.iter().product();
        let (mut mode, mut granularity, mut reason) =
            if self.keep_float.iter().any(|p| glob_match(p, name)) {
                (Mode::Float, self.granularity, Reason::KeptByPattern)
            } else if elements < self.min_elements {
                (Mode::Float, self.granularity, Reason::TooSmall)
            } else {
                (self.mode, self.granularity, Reason::Default)
            };
        for o in self
            .overrides
            .iter()
            .filter(|o| glob_match(&o.pattern, name))
        {
            mode = o.mode.unwrap_or(mode);
            granularity = o.granularity.unwrap_or(granularity);
            reason = Reason::Override;
        }
        (mode, granularity, reason)
    }

    /// Whether `name` of `shape` is a dense layer's weight.
    pub fn is_layer_weight(&self, name: &str, shape: &[usize]) -> bool {
        shape.len() == 2 && self.weights.iter().any(|p| glob_match(p, name))
    }

    /// Quantizes `set`: every layer weight by [`Policy::decide`], its bias attached, every other
    /// tensor kept.
    ///
    /// Errors: a mode a stored model cannot hold ([`Mode::FullInteger`], which needs
    /// calibration: [`Error::InvalidArgument`]); the errors of quantizing a weight (non-finite
    /// values, a float16 overflow).
    pub fn apply(&self, set: &TensorSet) -> Result<QuantizedModel> {
        self.apply_with_report(set).map(|(m, _)| m)
    }

    /// [`Policy::apply`] and, per layer, what it stored and the error it made.
    ///
    /// Errors: as [`Policy::apply`].
    pub fn apply_with_report(
        &self,
        set: &TensorSet,
    ) -> Result<(QuantizedModel, Vec<WeightReport>)> {
        self.apply_with_progress(set, |_, _| {})
    }

    /// [`Policy::apply_with_report`], calling `progress(done, total)` after each layer.
    ///
    /// Errors: as [`Policy::apply`].
    pub fn apply_with_progress(
        &self,
        set: &TensorSet,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<(QuantizedModel, Vec<WeightReport>)> {
        const OP: &str = "Policy::apply";
        let weight_names: Vec<&str> = set
            .names()
            .filter(|n| self.is_layer_weight(n, &set.get(n).expect("listed").shape))
            .collect();
        let mut model = QuantizedModel::new(self.flavour);
        let mut reports = Vec::with_capacity(weight_names.len());
        let mut attached = std::collections::BTreeSet::new();
        for (done, &wname) in weight_names.iter().enumerate() {
            let t = set.get(wname)?;
            let w =
                ArrayView2::from_shape((t.shape[0], t.shape[1]), &t.data).expect("rank 2, checked");
            let (n, k) = w.dim();
            let (mode, granularity, reason) = self.decide(wname, &t.shape);
            let bias_name = bias_name_of(wname);
            let bias = bias_name.as_deref().and_then(|b| match set.get(b) {
                Ok(bt) if bt.shape == [n] => Some((b.to_string(), bt)),
                _ => None,
            });
            if let Some((b, _)) = &bias {
                attached.insert(b.clone());
            }
            let weights = LayerWeights::from_f32(OP, wname, w, mode, granularity)?;
            let error = ErrorStats::compare(&t.data, &weights.decoded());
            let source_bytes = |t: &FloatTensor| t.data.len() * t.dtype.bytes();
            let bias_bytes = bias.as_ref().map_or(0, |(_, bt)| 4 * bt.data.len());
            let report = WeightReport {
                layer: layer_name_of(wname).to_string(),
                shape: [n, k],
                mode,
                granularity,
                reason,
                bytes_before: source_bytes(t) + bias.as_ref().map_or(0, |(_, bt)| source_bytes(bt)),
                bytes_after: weights.stored_bytes() + bias_bytes,
                error,
            };
            model.insert_layer(ModelLayer {
                name: report.layer.clone(),
                weight_name: wname.to_string(),
                bias_name: bias.as_ref().map(|(b, _)| b.clone()),
                weights,
                bias: bias.map(|(_, bt)| bt.data.clone()),
            })?;
            reports.push(report);
            progress(done + 1, weight_names.len());
        }
        for name in set.names() {
            if !attached.contains(name) && !weight_names.contains(&name) {
                model.insert_kept(name, set.get(name)?.clone())?;
            }
        }
        Ok((model, reports))
    }
}

/// The bias that goes with weight `name`: the last `weight` replaced by `bias`.
fn bias_name_of(name: &str) -> Option<String> {
    name.rfind("weight")
        .map(|i| format!("{}bias{}", &name[..i], &name[i + "weight".len()..]))
}

/// The layer's name: the weight's name without a final `.weight` (or `weight`).
fn layer_name_of(name: &str) -> &str {
    name.strip_suffix(".weight")
        .or_else(|| name.strip_suffix("weight"))
        .filter(|s| !s.is_empty())
        .unwrap_or(name)
}
