//! A quantized model: named layers (their stored weights, scales and bias) and the tensors kept
//! as they were, and its file format.
//!
//! **The format** (version [`FORMAT_VERSION`]) is a safetensors file. A layer's weight is
//! stored under its source name: `I8 [N, K]` for the int8 modes, with its scales as
//! `<weight>_scale` (`F32 [N]` per channel, `[1]` per tensor), or `F16`/`BF16`/`F32 [N, K]`; its
//! bias as `F32 [N]` under the bias's source name. Kept tensors keep their names and source
//! dtypes. The header's metadata has one entry, `hybridq`, a JSON object with `format`
//! (`hybridq-quantized`), `format_version`, `flavour` (the default numerics), `layers` (name,
//! mode, granularity, shape and the tensor names of each layer), `kept` (names) and
//! `checksums` (the CRC-32 of every tensor's bytes, as 8 hex digits). One entry, because the
//! safetensors writer orders several entries at random, and the same model should give the
//! same bytes. Loading checks all of it and re-quantizes nothing; saving writes a temporary
//! file beside the target and renames it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use half::{bf16, f16};
use ndarray::{Array2, ArrayView1, ArrayView2};
use safetensors::{Dtype, SafeTensors};
use serde_json::{json, Value};

use super::tensors::{float_values, read_regular_file, FloatTensor, SourceDtype};
use crate::error::{check_finite, Error, Result};
use crate::flavour::Flavour;
use crate::layer::{build_linear, FloatLinear, HybridLinear, Linear, LinearOptions, Mode};
use crate::quantize::weights::{Granularity, QuantizedWeights};
use crate::toolkit::weight_only::{WeightFormat, WeightOnlyLinear};

/// The `format` metadata value of a quantized model file.
pub const FORMAT_NAME: &str = "hybridq-quantized";

/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// The safetensors metadata entry that holds the format's JSON document.
pub const METADATA_KEY: &str = "hybridq";

/// The document's own checksum: the CRC-32 of the document without this field, as serde_json
/// writes it (so layer names and modes are covered as the tensors' bytes are).
const METADATA_CHECKSUM: &str = "metadata_checksum";

/// The weights of one layer as a model stores them.
#[derive(Clone, Debug, PartialEq)]
pub enum LayerWeights {
    /// f32 (the layer stays float).
    F32(Array2<f32>),
    /// IEEE half precision, `[N, K]`.
    F16(Array2<f16>),
    /// bfloat16, `[N, K]`.
    Bf16(Array2<bf16>),
    /// Symmetric int8 with scales, computed in `mode` ([`Mode::Hybrid`] or
    /// [`Mode::WeightOnlyInt8`]).
    Int8 {
        /// The int8 values and scales.
        weights: QuantizedWeights,
        /// How the layer computes.
        mode: Mode,
    },
}

impl LayerWeights {
    /// Stores float weights `w` (tensor `name`) in `mode`.
    ///
    /// Errors: [`Error::InvalidArgument`] for [`Mode::FullInteger`] (its ranges need
    /// calibration, which a stored model does not carry), non-finite weights, a float16
    /// overflow ([`Error::OutOfRange`]), and the errors of [`QuantizedWeights::quantize`].
    pub fn from_f32(
        op: &'static str,
        name: &str,
        w: ArrayView2<'_, f32>,
        mode: Mode,
        granularity: Granularity,
    ) -> Result<Self> {
        let flat: Vec<f32> = w.iter().copied().collect();
        check_finite(op, "weights", &flat)?;
        Ok(match mode {
            Mode::Float => LayerWeights::F32(w.to_owned()),
            Mode::Float16 => {
                if let Some(i) = flat.iter().position(|v| f16::from_f32(*v).is_infinite()) {
                    return Err(Error::OutOfRange {
                        op,
                        what: "float16 weight",
                        index: i,
                        value: flat[i] as i64,
                        min: -65504,
                        max: 65504,
                    });
                }
                LayerWeights::F16(w.mapv(f16::from_f32))
            }
            Mode::BFloat16 => LayerWeights::Bf16(w.mapv(bf16::from_f32)),
            Mode::WeightOnlyInt8 | Mode::Hybrid => LayerWeights::Int8 {
                weights: QuantizedWeights::quantize(w, granularity)?,
                mode,
            },
            Mode::FullInteger => {
                return Err(Error::invalid(
                    op,
                    format!(
                        "`{name}`: the full-integer mode needs calibrated input and output \
                         ranges, which a stored model does not carry; use hybrid"
                    ),
                ))
            }
        })
    }

    /// The mode the layer computes in.
    pub fn mode(&self) -> Mode {
        match self {
            LayerWeights::F32(_) => Mode::Float,
            LayerWeights::F16(_) => Mode::Float16,
            LayerWeights::Bf16(_) => Mode::BFloat16,
            LayerWeights::Int8 { mode, .. } => *mode,
        }
    }

    /// The granularity of int8 weights (per channel for the float kinds, which have none).
    pub fn granularity(&self) -> Granularity {
        match self {
            LayerWeights::Int8 { weights, .. } => weights.granularity(),
            _ => Granularity::PerChannel,
        }
    }

    /// `[N, K]`.
    pub fn shape(&self) -> [usize; 2] {
        let (n, k) = match self {
            LayerWeights::F32(w) => w.dim(),
            LayerWeights::F16(w) => w.dim(),
            LayerWeights::Bf16(w) => w.dim(),
            LayerWeights::Int8 { weights, .. } => (weights.n(), weights.k()),
        };
        [n, k]
    }

    /// The weights as f32 (what the float kinds compute with; int8 dequantized), row-major.
    pub fn decoded(&self) -> Vec<f32> {
        match self {
            LayerWeights::F32(w) => w.iter().copied().collect(),
            LayerWeights::F16(w) => w.iter().map(|v| v.to_f32()).collect(),
            LayerWeights::Bf16(w) => w.iter().map(|v| v.to_f32()).collect(),
            LayerWeights::Int8 { weights, .. } => weights.dequantize().into_iter().collect(),
        }
    }

    /// Bytes of the stored values and scales.
    pub fn stored_bytes(&self) -> usize {
        match self {
            LayerWeights::F32(w) => 4 * w.len(),
            LayerWeights::F16(w) => 2 * w.len(),
            LayerWeights::Bf16(w) => 2 * w.len(),
            LayerWeights::Int8 { weights, .. } => weights.storage_bytes(),
        }
    }
}

/// One layer of a [`QuantizedModel`].
#[derive(Clone, Debug, PartialEq)]
pub struct ModelLayer {
    pub(crate) name: String,
    pub(crate) weight_name: String,
    pub(crate) bias_name: Option<String>,
    pub(crate) weights: LayerWeights,
    pub(crate) bias: Option<Vec<f32>>,
}

impl ModelLayer {
    /// The layer's name (its weight's name without `.weight`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The source name of its weight tensor.
    pub fn weight_name(&self) -> &str {
        &self.weight_name
    }

    /// The source name of its bias, if it has one.
    pub fn bias_name(&self) -> Option<&str> {
        self.bias_name.as_deref()
    }

    /// The stored weights.
    pub fn weights(&self) -> &LayerWeights {
        &self.weights
    }

    /// The bias.
    pub fn bias(&self) -> Option<&[f32]> {
        self.bias.as_deref()
    }
}

/// A model after [`Policy::apply`](super::policy::Policy::apply) or [`QuantizedModel::load`]:
/// named layers and the tensors kept as they were.
///
/// ```
/// use hybridq::model::{FloatTensor, Policy, QuantizedModel, SourceDtype, TensorSet};
/// use hybridq::{Linear, LinearOptions, Mode};
/// let mut set = TensorSet::default();
/// let w: Vec<f32> = (0..64 * 32).map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0).collect();
/// set.insert("fc.weight", FloatTensor { shape: vec![64, 32], data: w, dtype: SourceDtype::F32 })?;
/// set.insert("fc.bias", FloatTensor { shape: vec![64], data: vec![0.5; 64], dtype: SourceDtype::F32 })?;
/// set.insert("norm.weight", FloatTensor { shape: vec![32], data: vec![1.0; 32], dtype: SourceDtype::F32 })?;
/// let model = Policy::default().apply(&set)?;
/// assert_eq!(model.layer("fc")?.weights().mode(), Mode::Hybrid);
/// assert!(model.kept("norm.weight").is_ok());
///
/// // Saved and loaded: the same bytes, the same layer.
/// let bytes = model.to_bytes()?;
/// let loaded = QuantizedModel::from_bytes(&bytes)?;
/// assert_eq!(loaded, model);
/// let fc = loaded.linear("fc", &LinearOptions::default().threads(1))?;
/// assert_eq!(fc.out_features(), 64);
/// # Ok::<(), hybridq::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizedModel {
    flavour: Flavour,
    layers: BTreeMap<String, ModelLayer>,
    kept: BTreeMap<String, FloatTensor>,
}

impl QuantizedModel {
    /// An empty model whose default numerics are `flavour`.
    pub fn new(flavour: Flavour) -> Self {
        QuantizedModel {
            flavour,
            layers: BTreeMap::new(),
            kept: BTreeMap::new(),
        }
    }

    /// The default flavour recorded with the model.
    pub fn flavour(&self) -> Flavour {
        self.flavour
    }

    /// The layers, by name.
    pub fn layers(&self) -> impl Iterator<Item = &ModelLayer> {
        self.layers.values()
    }

    /// Layer `name`.
    ///
    /// Errors: [`Error::MissingTensor`].
    pub fn layer(&self, name: &str) -> Result<&ModelLayer> {
        self.layers.get(name).ok_or_else(|| Error::MissingTensor {
            op: "QuantizedModel::layer",
            name: name.to_string(),
        })
    }

    /// The names of the kept tensors.
    pub fn kept_names(&self) -> impl Iterator<Item = &str> {
        self.kept.keys().map(String::as_str)
    }

    /// Kept tensor `name`.
    ///
    /// Errors: [`Error::MissingTensor`].
    pub fn kept(&self, name: &str) -> Result<&FloatTensor> {
        self.kept.get(name).ok_or_else(|| Error::MissingTensor {
            op: "QuantizedModel::kept",
            name: name.to_string(),
        })
    }

    /// Every tensor name the model stores in a file: layers' weights, scales and biases, kept
    /// tensors.
    fn file_names(&self) -> BTreeSet<String> {
        let mut names: BTreeSet<String> = self.kept.keys().cloned().collect();
        for l in self.layers.values() {
            names.insert(l.weight_name.clone());
            if matches!(l.weights, LayerWeights::Int8 { .. }) {
                names.insert(scale_name(&l.weight_name));
            }
            names.extend(l.bias_name.clone());
        }
        names
    }

    /// Adds a layer.
    ///
    /// Errors: [`Error::InvalidArgument`] for a layer name or a tensor name already taken, or
    /// a bias whose length is not N.
    pub fn insert_layer(&mut self, layer: ModelLayer) -> Result<()> {
        const OP: &str = "QuantizedModel::insert_layer";
        let [n, _] = layer.weights.shape();
        if let Some(b) = &layer.bias {
            if b.len() != n || layer.bias_name.is_none() {
                return Err(Error::invalid(
                    OP,
                    format!("layer `{}`: a named bias of {n} values", layer.name),
                ));
            }
        }
        let taken = self.file_names();
        let mut own = vec![layer.weight_name.clone()];
        if matches!(layer.weights, LayerWeights::Int8 { .. }) {
            own.push(scale_name(&layer.weight_name));
        }
        own.extend(layer.bias_name.clone());
        if self.layers.contains_key(&layer.name) {
            return Err(Error::invalid(OP, format!("layer `{}` twice", layer.name)));
        }
        if let Some(t) = own.iter().find(|t| taken.contains(*t)) {
            return Err(Error::invalid(OP, format!("tensor name `{t}` taken twice")));
        }
        self.layers.insert(layer.name.clone(), layer);
        Ok(())
    }

    /// Keeps tensor `name` as it is.
    ///
    /// Errors: [`Error::InvalidArgument`] for a name already taken.
    pub fn insert_kept(&mut self, name: &str, tensor: FloatTensor) -> Result<()> {
        if self.file_names().contains(name) {
            return Err(Error::invalid(
                "QuantizedModel::insert_kept",
                format!("tensor name `{name}` taken twice"),
            ));
        }
        self.kept.insert(name.to_string(), tensor);
        Ok(())
    }

    /// The layer `name` built for computing: its stored mode and granularity, everything else
    /// (nonlinearity, threads, flavour, inputs, kernels) from `options` (whose mode and
    /// granularity are ignored). Int8 weights are used as stored, never re-quantized.
    ///
    /// Errors: [`Error::MissingTensor`] for an unknown layer, and the layer constructors'.
    pub fn linear(&self, name: &str, options: &LinearOptions) -> Result<Box<dyn Linear>> {
        let l = self.layer(name)?;
        let bias = l.bias.as_deref().map(ArrayView1::from);
        let (activation, gelu) = options.split_nonlinearity();
        let layer: Box<dyn Linear> = match &l.weights {
            LayerWeights::Int8 {
                weights,
                mode: Mode::Hybrid,
            } => Box::new(HybridLinear::new(
                weights.clone(),
                bias,
                options.hybrid_config(activation),
            )?),
            LayerWeights::Int8 { weights, .. } => Box::new(options.with_float_kernel(
                WeightOnlyLinear::from_quantized(weights.clone(), bias, activation)?,
            )?),
            LayerWeights::F32(w) => {
                return build_linear(w.view(), bias, &options.mode(Mode::Float), None)
            }
            LayerWeights::F16(_) | LayerWeights::Bf16(_) => {
                let format = match l.weights {
                    LayerWeights::F16(_) => WeightFormat::Float16,
                    _ => WeightFormat::BFloat16,
                };
                let [n, k] = l.weights.shape();
                let w = Array2::from_shape_vec((n, k), l.weights.decoded()).expect("n * k");
                // Re-encoding a value decoded from the format gives it back exactly.
                Box::new(options.with_float_kernel(WeightOnlyLinear::new(
                    w.view(),
                    bias,
                    activation,
                    format,
                )?)?)
            }
        };
        options.finish(layer, gelu)
    }

    /// Layer `name` as a float layer of its stored weights decoded (int8 dequantized), with
    /// its bias and no activation: a reference that isolates the error of the inputs'
    /// quantization.
    ///
    /// Errors: [`Error::MissingTensor`].
    pub fn decoded_linear(&self, name: &str) -> Result<FloatLinear> {
        let l = self.layer(name)?;
        let [n, k] = l.weights.shape();
        let w = Array2::from_shape_vec((n, k), l.weights.decoded()).expect("n * k");
        FloatLinear::new(
            w.view(),
            l.bias.as_deref().map(ArrayView1::from),
            Default::default(),
        )
    }

    /// The model as the bytes of a quantized model file.
    ///
    /// Errors: [`Error::InvalidArgument`] if the safetensors writer refuses the tensors.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
        let mut layers_json = Vec::new();
        for l in self.layers.values() {
            let [n, k] = l.weights.shape();
            let (dtype, bytes) = match &l.weights {
                LayerWeights::F32(w) => (Dtype::F32, le_bytes(w.iter(), |v| v.to_le_bytes())),
                LayerWeights::F16(w) => (Dtype::F16, le_bytes(w.iter(), |v| v.to_le_bytes())),
                LayerWeights::Bf16(w) => (Dtype::BF16, le_bytes(w.iter(), |v| v.to_le_bytes())),
                LayerWeights::Int8 { weights, .. } => {
                    let s = weights.scales();
                    tensors.push((
                        scale_name(&l.weight_name),
                        Dtype::F32,
                        vec![s.len()],
                        le_bytes(s.iter(), |v| v.to_le_bytes()),
                    ));
                    let v = weights.values();
                    (Dtype::I8, v.iter().map(|&q| q as u8).collect())
                }
            };
            tensors.push((l.weight_name.clone(), dtype, vec![n, k], bytes));
            if let (Some(name), Some(b)) = (&l.bias_name, &l.bias) {
                let bytes = le_bytes(b.iter(), |v| v.to_le_bytes());
                tensors.push((name.clone(), Dtype::F32, vec![n], bytes));
            }
            let has_scale = matches!(l.weights, LayerWeights::Int8 { .. });
            layers_json.push(json!({
                "name": l.name,
                "mode": l.weights.mode().id(),
                "granularity": l.weights.granularity().name(),
                "shape": [n, k],
                "weight": l.weight_name,
                "scale": has_scale.then(|| scale_name(&l.weight_name)),
                "bias": l.bias_name,
            }));
        }
        for (name, t) in &self.kept {
            let (dtype, bytes) = match t.dtype {
                SourceDtype::F32 => (Dtype::F32, le_bytes(t.data.iter(), |v| v.to_le_bytes())),
                SourceDtype::F16 => (
                    Dtype::F16,
                    le_bytes(t.data.iter(), |v| f16::from_f32(*v).to_le_bytes()),
                ),
                SourceDtype::Bf16 => (
                    Dtype::BF16,
                    le_bytes(t.data.iter(), |v| bf16::from_f32(*v).to_le_bytes()),
                ),
            };
            tensors.push((name.clone(), dtype, t.shape.clone(), bytes));
        }
        let checksums: serde_json::Map<String, Value> = tensors
            .iter()
            .map(|(name, _, _, bytes)| (name.clone(), json!(format!("{:08x}", crc32(bytes)))))
            .collect();
        let mut document = json!({
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "flavour": self.flavour.name(),
            "layers": layers_json,
            "kept": self.kept.keys().collect::<Vec<_>>(),
            "checksums": checksums,
        });
        let sum = format!("{:08x}", crc32(document.to_string().as_bytes()));
        document[METADATA_CHECKSUM] = json!(sum);
        let metadata =
            std::collections::HashMap::from([(METADATA_KEY.to_string(), document.to_string())]);
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
            .iter()
            .map(|(name, dtype, shape, bytes)| {
                safetensors::tensor::TensorView::new(*dtype, shape.clone(), bytes)
                    .map(|v| (name.clone(), v))
            })
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::invalid("QuantizedModel::to_bytes", e.to_string()))?;
        safetensors::serialize(views, Some(metadata))
            .map_err(|e| Error::invalid("QuantizedModel::to_bytes", e.to_string()))
    }

    /// Saves the model to `path`: written to a temporary file beside it, flushed to disk and
    /// renamed, so an interrupted save never leaves a truncated file under `path`.
    ///
    /// Errors: [`Error::File`] when the file cannot be written.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        use std::io::Write;
        let path = path.as_ref();
        let file_error = |message: String| Error::File {
            path: path.to_path_buf(),
            message,
        };
        let bytes = self.to_bytes()?;
        let name = path
            .file_name()
            .ok_or_else(|| file_error("not a file path".into()))?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".tmp-{}", std::process::id()));
        let tmp = path.with_file_name(tmp_name);
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            file_error(format!("cannot save: {e}"))
        })
    }

    /// Loads a quantized model file.
    ///
    /// Errors: [`Error::File`] (unreadable, not safetensors, another format, metadata that
    /// does not describe the tensors), [`Error::NotQuantized`] (no metadata of this format), [`Error::UnsupportedVersion`], [`Error::Checksum`],
    /// [`Error::MissingTensor`], [`Error::TensorKind`] (dtype or shape), [`Error::BadScale`].
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        Self::parse(&read_regular_file(path)?, path)
    }

    /// Parses a quantized model file held in memory (errors as [`QuantizedModel::load`], with
    /// path `<memory>`).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        Self::parse(bytes, Path::new("<memory>"))
    }

    fn parse(bytes: &[u8], path: &Path) -> Result<Self> {
        Loader::new(bytes, path)?.model()
    }
}

/// The checks of one file being loaded.
struct Loader<'a> {
    path: PathBuf,
    st: SafeTensors<'a>,
    document: serde_json::Map<String, Value>,
    checksums: BTreeMap<String, u32>,
    used: BTreeSet<String>,
}

impl<'a> Loader<'a> {
    const OP: &'static str = "QuantizedModel::load";

    fn new(bytes: &'a [u8], path: &Path) -> Result<Self> {
        let bad = |message: String| Error::File {
            path: path.to_path_buf(),
            message,
        };
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| bad(format!("not a valid safetensors file: {e}")))?;
        let (_, header) = SafeTensors::read_metadata(bytes)
            .map_err(|e| bad(format!("not a valid safetensors file: {e}")))?;
        let text = header
            .metadata()
            .as_ref()
            .and_then(|m| m.get(METADATA_KEY))
            .ok_or_else(|| Error::NotQuantized {
                path: path.to_path_buf(),
            })?;
        let mut document = match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(d)) => d,
            Ok(_) => {
                return Err(bad(format!(
                    "`{METADATA_KEY}` metadata is not a JSON object"
                )))
            }
            Err(e) => return Err(bad(format!("`{METADATA_KEY}` metadata: {e}"))),
        };
        let recorded = document.remove(METADATA_CHECKSUM);
        match document.get("format").and_then(Value::as_str) {
            Some(FORMAT_NAME) => {}
            other => {
                return Err(bad(format!(
                    "format {}, not `{FORMAT_NAME}`",
                    other.map_or("(none)".into(), |f| format!("`{f}`"))
                )))
            }
        }
        match document.get("format_version") {
            Some(v) if v.as_u64() == Some(FORMAT_VERSION as u64) => {}
            found => {
                return Err(Error::UnsupportedVersion {
                    path: path.to_path_buf(),
                    found: found.map_or_else(|| "(none)".into(), Value::to_string),
                    supported: FORMAT_VERSION,
                })
            }
        }
        let recorded = recorded
            .as_ref()
            .and_then(Value::as_str)
            .filter(|s| s.len() == 8)
            .and_then(|s| u32::from_str_radix(s, 16).ok())
            .ok_or_else(|| bad(format!("no 8-hex-digit `{METADATA_CHECKSUM}`")))?;
        let got = crc32(Value::Object(document.clone()).to_string().as_bytes());
        if got != recorded {
            return Err(Error::Checksum {
                path: path.to_path_buf(),
                tensor: format!("({METADATA_KEY} metadata)"),
                expected: recorded,
                got,
            });
        }
        let mut loader = Loader {
            path: path.to_path_buf(),
            st,
            document,
            checksums: BTreeMap::new(),
            used: BTreeSet::new(),
        };
        let sums = loader.json("checksums")?;
        let sums = sums
            .as_object()
            .ok_or_else(|| loader.bad("`checksums` is not a JSON object".into()))?;
        for (name, v) in sums {
            let sum = v
                .as_str()
                .filter(|s| s.len() == 8)
                .and_then(|s| u32::from_str_radix(s, 16).ok())
                .ok_or_else(|| loader.bad(format!("checksum of `{name}` is not 8 hex digits")))?;
            loader.checksums.insert(name.clone(), sum);
        }
        Ok(loader)
    }

    fn bad(&self, message: String) -> Error {
        Error::File {
            path: self.path.clone(),
            message,
        }
    }

    fn json(&self, key: &str) -> Result<Value> {
        self.document
            .get(key)
            .cloned()
            .ok_or_else(|| self.bad(format!("no `{key}` in the metadata")))
    }

    /// Tensor `name`'s dtype, shape and bytes, its checksum verified; marks it used.
    fn tensor(&mut self, name: &str) -> Result<(Dtype, Vec<usize>, &'a [u8])> {
        let view = self.st.tensor(name).map_err(|_| Error::MissingTensor {
            op: Self::OP,
            name: name.to_string(),
        })?;
        let expected = *self
            .checksums
            .get(name)
            .ok_or_else(|| self.bad(format!("no checksum for tensor `{name}`")))?;
        let data: &'a [u8] = view.data();
        let got = crc32(data);
        if got != expected {
            return Err(Error::Checksum {
                path: self.path.clone(),
                tensor: name.to_string(),
                expected,
                got,
            });
        }
        if !self.used.insert(name.to_string()) {
            return Err(self.bad(format!("tensor `{name}` used twice")));
        }
        Ok((view.dtype(), view.shape().to_vec(), data))
    }

    fn kind(name: &str, expected: impl Into<String>, got: impl Into<String>) -> Error {
        Error::TensorKind {
            op: Self::OP,
            name: name.to_string(),
            expected: expected.into(),
            got: got.into(),
        }
    }

    /// A float tensor of `shape` (any float dtype when `dtype` is `None`).
    fn floats(&mut self, name: &str, shape: &[usize]) -> Result<(SourceDtype, Vec<f32>)> {
        let (dtype, got_shape, data) = self.tensor(name)?;
        if got_shape != shape {
            return Err(Self::kind(
                name,
                format!("shape {shape:?}"),
                format!("shape {got_shape:?}"),
            ));
        }
        float_values(dtype, data)
            .ok_or_else(|| Self::kind(name, "f32, f16 or bf16", format!("{dtype:?}")))
    }

    fn str_field<'v>(&self, layer: &'v Value, key: &str) -> Result<&'v str> {
        layer
            .get(key)
            .and_then(Value::as_str)
            .ok_or_else(|| self.bad(format!("a layer without a `{key}` string: {layer}")))
    }

    fn layer(&mut self, v: &Value) -> Result<ModelLayer> {
        let name = self.str_field(v, "name")?.to_string();
        let mode: Mode = self
            .str_field(v, "mode")?
            .parse()
            .map_err(|e| self.bad(format!("layer `{name}`: {e}")))?;
        let granularity: Granularity = self
            .str_field(v, "granularity")?
            .parse()
            .map_err(|e| self.bad(format!("layer `{name}`: {e}")))?;
        let shape = v
            .get("shape")
            .and_then(Value::as_array)
            .filter(|a| a.len() == 2)
            .and_then(|a| Some([a[0].as_u64()? as usize, a[1].as_u64()? as usize]))
            .ok_or_else(|| self.bad(format!("layer `{name}`: no [N, K] shape")))?;
        let [n, k] = shape;
        let weight_name = self.str_field(v, "weight")?.to_string();
        let optional = |key: &str| -> Result<Option<String>> {
            match v.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(other) => Err(Error::File {
                    path: self.path.clone(),
                    message: format!("layer `{name}`: `{key}` is {other}"),
                }),
            }
        };
        let (scale_name, bias_name) = (optional("scale")?, optional("bias")?);
        let weights = match mode {
            Mode::Hybrid | Mode::WeightOnlyInt8 => {
                let scale_name = scale_name
                    .ok_or_else(|| self.bad(format!("int8 layer `{name}` without scales")))?;
                let (dtype, got, data) = self.tensor(&weight_name)?;
                if dtype != Dtype::I8 || got != shape {
                    return Err(Self::kind(
                        &weight_name,
                        format!("I8 {shape:?}"),
                        format!("{dtype:?} {got:?}"),
                    ));
                }
                let values =
                    Array2::from_shape_vec((n, k), data.iter().map(|&b| b as i8).collect())
                        .expect("n * k bytes, checked by the shape");
                let scales_len = match granularity {
                    Granularity::PerChannel => n,
                    Granularity::PerTensor => 1,
                };
                let (dtype, scales) = self.floats(&scale_name, &[scales_len])?;
                if dtype != SourceDtype::F32 {
                    return Err(Self::kind(&scale_name, "F32", format!("{dtype:?}")));
                }
                LayerWeights::Int8 {
                    weights: QuantizedWeights::from_parts(values.view(), &scales)?,
                    mode,
                }
            }
            Mode::Float | Mode::Float16 | Mode::BFloat16 => {
                let want = match mode {
                    Mode::Float => SourceDtype::F32,
                    Mode::Float16 => SourceDtype::F16,
                    _ => SourceDtype::Bf16,
                };
                let (dtype, values) = self.floats(&weight_name, &shape)?;
                if dtype != want {
                    return Err(Self::kind(
                        &weight_name,
                        format!("{want:?}"),
                        format!("{dtype:?}"),
                    ));
                }
                check_finite(Self::OP, "weights", &values)?;
                let w = Array2::from_shape_vec((n, k), values).expect("n * k");
                match mode {
                    Mode::Float => LayerWeights::F32(w),
                    Mode::Float16 => LayerWeights::F16(w.mapv(f16::from_f32)),
                    _ => LayerWeights::Bf16(w.mapv(bf16::from_f32)),
                }
            }
            Mode::FullInteger => {
                return Err(self.bad(format!("layer `{name}`: mode `integer` is not stored")))
            }
        };
        let bias = match &bias_name {
            None => None,
            Some(b) => {
                let (dtype, values) = self.floats(b, &[n])?;
                if dtype != SourceDtype::F32 {
                    return Err(Self::kind(b, "F32", format!("{dtype:?}")));
                }
                check_finite(Self::OP, "bias", &values)?;
                Some(values)
            }
        };
        Ok(ModelLayer {
            name,
            weight_name,
            bias_name,
            weights,
            bias,
        })
    }

    fn model(mut self) -> Result<QuantizedModel> {
        let flavour_name = self
            .document
            .get("flavour")
            .and_then(Value::as_str)
            .map(String::from)
            .ok_or_else(|| self.bad("no `flavour` string in the metadata".into()))?;
        let flavour = Flavour::ALL
            .into_iter()
            .find(|f| f.name() == flavour_name)
            .ok_or_else(|| self.bad(format!("unknown flavour `{flavour_name}`")))?;
        let mut model = QuantizedModel::new(flavour);
        let layers = self.json("layers")?;
        let layers = layers
            .as_array()
            .ok_or_else(|| self.bad("`layers` is not a JSON array".into()))?;
        for v in layers {
            let layer = self.layer(v)?;
            model
                .insert_layer(layer)
                .map_err(|e| self.bad(e.to_string()))?;
        }
        let kept = self.json("kept")?;
        let kept = kept
            .as_array()
            .ok_or_else(|| self.bad("`kept` is not a JSON array".into()))?;
        for v in kept {
            let name = v
                .as_str()
                .ok_or_else(|| self.bad(format!("a kept name that is not a string: {v}")))?;
            let shape = self
                .st
                .tensor(name)
                .map_err(|_| Error::MissingTensor {
                    op: Self::OP,
                    name: name.to_string(),
                })?
                .shape()
                .to_vec();
            let (dtype, data) = self.floats(name, &shape)?;
            let t = FloatTensor { shape, data, dtype };
            model
                .insert_kept(name, t)
                .map_err(|e| self.bad(e.to_string()))?;
        }
        let names: Vec<String> = self.st.names().into_iter().map(String::from).collect();
        if let Some(stray) = names.iter().find(|n| !self.used.contains(*n)) {
            return Err(self.bad(format!("tensor `{stray}` is neither in a layer nor kept")));
        }
        if let Some(extra) = self.checksums.keys().find(|n| !self.used.contains(*n)) {
            return Err(self.bad(format!(
                "a checksum for `{extra}`, which the file does not hold"
            )));
        }
        Ok(model)
    }
}

/// The name of an int8 weight's scales.
fn scale_name(weight: &str) -> String {
    format!("{weight}_scale")
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(bytes);
    h.finalize()
}

fn le_bytes<'v, T: 'v, const N: usize>(
    values: impl Iterator<Item = &'v T>,
    f: impl Fn(&T) -> [u8; N],
) -> Vec<u8> {
    values.flat_map(f).collect()
}
