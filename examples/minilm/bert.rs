//! A BERT encoder (all-MiniLM-L6-v2's shape) on ndarray slices, with every dense layer a
//! `Box<dyn Linear>` from a [`QuantizedModel`]: the part of the example that shows how hybridq
//! drops into a float pipeline. Attention, layer norm, pooling stay plain f32 code.

use std::time::{Duration, Instant};

use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2, ShapeBuilder};

use hybridq::model::{AccuracyProbe, QuantizedModel, TensorSet};
use hybridq::{Error, Gelu, Linear, LinearOptions, Result, Scratch};

/// The encoder's shape, from `config.json`.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    pub hidden: usize,
    pub heads: usize,
    pub layers: usize,
    pub intermediate: usize,
    pub eps: f32,
}

impl Config {
    /// all-MiniLM-L6-v2's values, checked against the `config.json` text.
    pub fn from_json(text: &str) -> std::result::Result<Config, String> {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let get = |k: &str| {
            v.get(k)
                .and_then(serde_json::Value::as_u64)
                .map(|x| x as usize)
                .ok_or_else(|| format!("config.json: no `{k}`"))
        };
        if v.get("hidden_act").and_then(|a| a.as_str()) != Some("gelu") {
            return Err("config.json: only hidden_act = gelu (erf) is implemented".into());
        }
        Ok(Config {
            hidden: get("hidden_size")?,
            heads: get("num_attention_heads")?,
            layers: get("num_hidden_layers")?,
            intermediate: get("intermediate_size")?,
            eps: v
                .get("layer_norm_eps")
                .and_then(serde_json::Value::as_f64)
                .unwrap_or(1e-12) as f32,
        })
    }
}

/// A dense layer of the pipeline, with its name and (for the report) its float reference.
pub struct Dense {
    pub name: String,
    pub layer: Box<dyn Linear>,
    pub reference: Option<Box<dyn Linear>>,
}

struct Norm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

struct Block {
    query: Dense,
    key: Dense,
    value: Dense,
    attention_out: Dense,
    norm1: Norm,
    intermediate: Dense,
    output: Dense,
    norm2: Norm,
}

/// The encoder.
pub struct Bert {
    config: Config,
    word: Vec<f32>,
    position: Vec<f32>,
    token_type: Vec<f32>,
    max_positions: usize,
    norm: Norm,
    blocks: Vec<Block>,
}

/// Per-call state: buffers, the scratch of the layers, the dense-layer timer, the probe.
#[derive(Default)]
pub struct Run {
    scratch: Scratch,
    pub dense_time: Duration,
    pub probe: Option<AccuracyProbe>,
    h: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    ctx: Vec<f32>,
    tmp: Vec<f32>,
    inter: Vec<f32>,
    scores: Vec<f32>,
}

fn kept(model: &QuantizedModel, name: &str) -> Result<Vec<f32>> {
    Ok(model.kept(name)?.data.clone())
}

fn table(model: &QuantizedModel, name: &str) -> Result<(Vec<f32>, usize)> {
    let l = model.layer(name)?;
    Ok((l.weights().decoded(), l.weights().shape()[0]))
}

impl Bert {
    /// Builds the encoder from `model`: dense layers through `options` (the intermediate one
    /// with GELU), float references from `float` when given (for the report).
    pub fn new(
        config: Config,
        model: &QuantizedModel,
        options: &LinearOptions,
        float: Option<&TensorSet>,
    ) -> Result<Bert> {
        let dense = |name: String, gelu: bool| -> Result<Dense> {
            let o = if gelu {
                options.nonlinearity(Gelu::Erf)
            } else {
                *options
            };
            // The float reference: the source weights in f32, the same nonlinearity.
            let reference = match float {
                None => None,
                Some(set) => {
                    let w = set.matrix(&format!("{name}.weight"))?;
                    let b = set.get(&format!("{name}.bias"))?;
                    let float = o.mode(hybridq::Mode::Float);
                    let bias = ndarray::ArrayView1::from(&b.data);
                    Some(hybridq::build_linear(w, Some(bias), &float, None)?)
                }
            };
            Ok(Dense {
                layer: model.linear(&name, &o)?,
                name,
                reference,
            })
        };
        let norm = |prefix: &str| -> Result<Norm> {
            Ok(Norm {
                gamma: kept(model, &format!("{prefix}.weight"))?,
                beta: kept(model, &format!("{prefix}.bias"))?,
            })
        };
        let mut blocks = Vec::with_capacity(config.layers);
        for i in 0..config.layers {
            let p = format!("encoder.layer.{i}");
            blocks.push(Block {
                query: dense(format!("{p}.attention.self.query"), false)?,
                key: dense(format!("{p}.attention.self.key"), false)?,
                value: dense(format!("{p}.attention.self.value"), false)?,
                attention_out: dense(format!("{p}.attention.output.dense"), false)?,
                norm1: norm(&format!("{p}.attention.output.LayerNorm"))?,
                intermediate: dense(format!("{p}.intermediate.dense"), true)?,
                output: dense(format!("{p}.output.dense"), false)?,
                norm2: norm(&format!("{p}.output.LayerNorm"))?,
            });
        }
        let (word, _) = table(model, "embeddings.word_embeddings")?;
        let (position, max_positions) = table(model, "embeddings.position_embeddings")?;
        let (token_type, _) = table(model, "embeddings.token_type_embeddings")?;
        Ok(Bert {
            config,
            word,
            position,
            token_type,
            max_positions,
            norm: norm("embeddings.LayerNorm")?,
            blocks,
        })
    }

    /// The kernel of the first dense layer (every one runs the same).
    pub fn kernel_name(&self) -> &'static str {
        self.blocks[0].query.layer.kernel_name()
    }

    /// Sentence embeddings `[S, hidden]`, mean-pooled over the mask and L2-normalised, of `S`
    /// sentences of token ids padded to one length `len` (`mask[s * len + t]` is 1 for real
    /// tokens).
    ///
    /// The padding tokens are dropped first ("remove padding"): the encoder runs on the real
    /// tokens of every sentence packed one after another, and attention mixes the tokens of
    /// one sentence only. Every step but attention works row by row and hybridq's layers give
    /// a row the same bits whatever the batch around it, so the embeddings are those of the
    /// padded computation (where a padded key's weight is exactly 0 and padded rows are never
    /// pooled), for the real tokens' share of the work.
    pub fn encode(&self, ids: &[u32], mask: &[u32], len: usize, run: &mut Run) -> Result<Vec<f32>> {
        let (d, sentences) = (self.config.hidden, ids.len() / len.max(1));
        if len > self.max_positions || mask.len() != ids.len() {
            return Err(Error::InvalidArgument {
                op: "Bert::encode",
                message: format!(
                    "{len} tokens (at most {}), {} ids, {} mask values",
                    self.max_positions,
                    ids.len(),
                    mask.len()
                ),
            });
        }
        // The real tokens of each sentence: (first packed row, count).
        let mut spans = Vec::with_capacity(sentences);
        let mut tokens = Vec::with_capacity(ids.len());
        for s in 0..sentences {
            let start = tokens.len();
            for t in 0..len {
                if mask[s * len + t] == 1 {
                    tokens.push((ids[s * len + t] as usize, t));
                }
            }
            spans.push((start, tokens.len() - start));
        }
        let rows = tokens.len();
        let vocab = self.word.len() / d;
        run.h.resize(rows * d, 0.0);
        for (r, &(id, t)) in tokens.iter().enumerate() {
            if id >= vocab {
                return Err(Error::InvalidArgument {
                    op: "Bert::encode",
                    message: format!("token id {id} >= {vocab}"),
                });
            }
            let row = &mut run.h[r * d..(r + 1) * d];
            let (word, position) = (&self.word[id * d..], &self.position[t * d..]);
            for (j, h) in row.iter_mut().enumerate() {
                *h = word[j] + self.token_type[j] + position[j];
            }
        }
        layer_norm(&mut run.h, &self.norm, self.config.eps);
        for b in &self.blocks {
            self.block(b, rows, &spans, run)?;
        }
        // Mean pooling over each sentence's tokens, then L2 normalisation.
        let mut out = vec![0.0f32; sentences * d];
        for (e, &(start, n)) in out.chunks_exact_mut(d).zip(&spans) {
            for h in run.h[start * d..(start + n) * d].chunks_exact(d) {
                for (o, &h) in e.iter_mut().zip(h) {
                    *o += h;
                }
            }
            e.iter_mut().for_each(|v| *v /= (n as f32).max(1e-9));
            let norm = e.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            e.iter_mut().for_each(|v| *v /= norm);
        }
        Ok(out)
    }

    /// One encoder block on `rows` packed token rows; `spans` gives each sentence's rows.
    fn block(&self, b: &Block, rows: usize, spans: &[(usize, usize)], run: &mut Run) -> Result<()> {
        let (d, heads) = (self.config.hidden, self.config.heads);
        let dh = d / heads;
        for buf in [
            &mut run.q,
            &mut run.k,
            &mut run.v,
            &mut run.ctx,
            &mut run.tmp,
        ] {
            buf.resize(rows * d, 0.0);
        }
        let h = std::mem::take(&mut run.h);
        let (mut q, mut k, mut v) = (
            std::mem::take(&mut run.q),
            std::mem::take(&mut run.k),
            std::mem::take(&mut run.v),
        );
        run.dense(&b.query, &h, rows, &mut q)?;
        run.dense(&b.key, &h, rows, &mut k)?;
        run.dense(&b.value, &h, rows, &mut v)?;
        // Scaled dot-product attention per sentence and head: the two products through
        // ndarray (matrixmultiply) on strided views of the head's columns.
        let scale = 1.0 / (dh as f32).sqrt();
        fn head_view(buf: &[f32], at: usize, n: usize, dh: usize, d: usize) -> ArrayView2<'_, f32> {
            ArrayView2::from_shape((n, dh).strides((d, 1)), &buf[at..]).expect("inside the buffer")
        }
        for &(start, n) in spans.iter().filter(|s| s.1 > 0) {
            run.scores.resize(n * n, 0.0);
            for head in 0..heads {
                let mut scores =
                    ArrayViewMut2::from_shape((n, n), &mut run.scores[..n * n]).expect("n x n");
                let at = start * d + head * dh;
                let (qh, kh) = (head_view(&q, at, n, dh, d), head_view(&k, at, n, dh, d));
                general_mat_mul(scale, &qh, &kh.t(), 0.0, &mut scores);
                for mut row in scores.rows_mut() {
                    let row = row.as_slice_mut().expect("row-major");
                    let max = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
                    let mut sum = 0.0f32;
                    for sc in row.iter_mut() {
                        *sc = (*sc - max).exp();
                        sum += *sc;
                    }
                    row.iter_mut().for_each(|sc| *sc /= sum);
                }
                let vh = head_view(&v, at, n, dh, d);
                let mut ch = ArrayViewMut2::from_shape((n, dh).strides((d, 1)), &mut run.ctx[at..])
                    .expect("inside the buffer");
                general_mat_mul(1.0, &scores.view(), &vh, 0.0, &mut ch);
            }
        }
        let ctx = std::mem::take(&mut run.ctx);
        let mut tmp = std::mem::take(&mut run.tmp);
        run.dense(&b.attention_out, &ctx, rows, &mut tmp)?;
        let mut h1 = h;
        for (a, t) in h1.iter_mut().zip(&tmp) {
            *a += t;
        }
        layer_norm(&mut h1, &b.norm1, self.config.eps);
        let mut inter = std::mem::take(&mut run.inter);
        inter.resize(rows * self.config.intermediate, 0.0);
        run.dense(&b.intermediate, &h1, rows, &mut inter)?;
        run.dense(&b.output, &inter, rows, &mut tmp)?;
        for (a, t) in h1.iter_mut().zip(&tmp) {
            *a += t;
        }
        layer_norm(&mut h1, &b.norm2, self.config.eps);
        (run.h, run.q, run.k, run.v, run.ctx, run.tmp, run.inter) = (h1, q, k, v, ctx, tmp, inter);
        Ok(())
    }
}

impl Run {
    /// One dense layer: through the probe (beside its reference) when there is one, timed.
    fn dense(&mut self, d: &Dense, x: &[f32], rows: usize, out: &mut [f32]) -> Result<()> {
        let start = Instant::now();
        match (&mut self.probe, &d.reference) {
            (Some(probe), Some(reference)) => {
                probe.observe(&d.name, &**reference, &*d.layer, x, rows, out)?
            }
            _ => d.layer.forward_rows(x, rows, out, &mut self.scratch)?,
        }
        self.dense_time += start.elapsed();
        Ok(())
    }
}

/// LayerNorm over each row of `x` (biased variance, as PyTorch).
fn layer_norm(x: &mut [f32], n: &Norm, eps: f32) {
    let d = n.gamma.len();
    for row in x.chunks_exact_mut(d) {
        let mean = row.iter().sum::<f32>() / d as f32;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / d as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for ((v, g), b) in row.iter_mut().zip(&n.gamma).zip(&n.beta) {
            *v = (*v - mean) * inv * g + b;
        }
    }
}
