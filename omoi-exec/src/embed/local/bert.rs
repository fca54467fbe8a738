//! A BERT encoder's forward pass on the CPU (`f32`, one text at a time, no padding), with
//! the weight names Hugging Face's `BertModel` uses, mean pooling and L2 normalization: what
//! sentence-transformers runs for models such as all-MiniLM-L6-v2.

use serde::Deserialize;

use super::LocalModelError;
use super::safetensors::{Tensor, Tensors};

/// The fields of `config.json` the forward pass reads.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct BertConfig {
    model_type: Option<String>,
    pub(crate) hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    pub(crate) max_position_embeddings: usize,
    type_vocab_size: usize,
    pub(crate) vocab_size: usize,
    #[serde(default = "default_eps")]
    layer_norm_eps: f32,
    #[serde(default = "default_act")]
    hidden_act: String,
}

fn default_eps() -> f32 {
    1e-12
}

fn default_act() -> String {
    "gelu".into()
}

impl BertConfig {
    fn check(&self) -> Result<(), LocalModelError> {
        let unsupported = |m: String| Err(LocalModelError::UnsupportedModel(m));
        if let Some(t) = &self.model_type
            && t != "bert"
        {
            return unsupported(format!("model_type {t:?} (only bert is supported)"));
        }
        if self.hidden_act != "gelu" {
            return unsupported(format!("hidden_act {:?} (only gelu is supported)", self.hidden_act));
        }
        if self.num_attention_heads == 0 || !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return unsupported(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        Ok(())
    }
}

/// A dense layer: `y = W x + b`, `W` stored `[out, in]` row-major.
#[derive(Debug)]
struct Linear {
    weight: Vec<f32>,
    bias: Vec<f32>,
    inputs: usize,
}

impl Linear {
    fn load(t: &Tensors, name: &str, outputs: usize, inputs: usize) -> Result<Self, LocalModelError> {
        Ok(Self {
            weight: t.get(&format!("{name}.weight"), &[outputs, inputs])?.data,
            bias: t.get(&format!("{name}.bias"), &[outputs])?.data,
            inputs,
        })
    }

    /// Applies the layer to each row of `x` (`rows × inputs`).
    fn forward(&self, x: &[f32]) -> Vec<f32> {
        let mut out = Vec::with_capacity(x.len() / self.inputs * self.bias.len());
        for row in x.chunks_exact(self.inputs) {
            for (w, b) in self.weight.chunks_exact(self.inputs).zip(&self.bias) {
                out.push(b + dot(row, w));
            }
        }
        out
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight independent accumulators let the compiler vectorize the loop.
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[derive(Debug)]
struct LayerNorm {
    weight: Vec<f32>,
    bias: Vec<f32>,
    eps: f32,
}

impl LayerNorm {
    fn load(t: &Tensors, name: &str, size: usize, eps: f32) -> Result<Self, LocalModelError> {
        Ok(Self {
            weight: t.get(&format!("{name}.weight"), &[size])?.data,
            bias: t.get(&format!("{name}.bias"), &[size])?.data,
            eps,
        })
    }

    fn apply(&self, x: &mut [f32]) {
        let n = self.weight.len();
        for row in x.chunks_exact_mut(n) {
            let mean = row.iter().sum::<f32>() / n as f32;
            let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n as f32;
            let inv = 1.0 / (var + self.eps).sqrt();
            for ((v, w), b) in row.iter_mut().zip(&self.weight).zip(&self.bias) {
                *v = (*v - mean) * inv * w + b;
            }
        }
    }
}

#[derive(Debug)]
struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attention_out: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
}

/// The loaded encoder.
#[derive(Debug)]
pub(crate) struct Bert {
    config: BertConfig,
    word: Tensor,
    position: Tensor,
    token_type: Tensor,
    embedding_norm: LayerNorm,
    layers: Vec<Layer>,
}

impl Bert {
    /// The encoder described by `config`, with weights from `tensors`.
    pub(crate) fn load(config: BertConfig, tensors: &Tensors) -> Result<Self, LocalModelError> {
        config.check()?;
        let (h, i, eps) = (config.hidden_size, config.intermediate_size, config.layer_norm_eps);
        // Some exports prefix every name with `bert.`.
        let prefix = if tensors.get("embeddings.word_embeddings.weight", &[config.vocab_size, h]).is_ok() {
            ""
        } else {
            "bert."
        };
        let name = |n: &str| format!("{prefix}{n}");
        let layers = (0..config.num_hidden_layers)
            .map(|l| {
                let n = |s: &str| name(&format!("encoder.layer.{l}.{s}"));
                Ok(Layer {
                    query: Linear::load(tensors, &n("attention.self.query"), h, h)?,
                    key: Linear::load(tensors, &n("attention.self.key"), h, h)?,
                    value: Linear::load(tensors, &n("attention.self.value"), h, h)?,
                    attention_out: Linear::load(tensors, &n("attention.output.dense"), h, h)?,
                    attention_norm: LayerNorm::load(tensors, &n("attention.output.LayerNorm"), h, eps)?,
                    intermediate: Linear::load(tensors, &n("intermediate.dense"), i, h)?,
                    output: Linear::load(tensors, &n("output.dense"), h, i)?,
                    output_norm: LayerNorm::load(tensors, &n("output.LayerNorm"), h, eps)?,
                })
            })
            .collect::<Result<Vec<_>, LocalModelError>>()?;
        Ok(Self {
            word: tensors.get(&name("embeddings.word_embeddings.weight"), &[config.vocab_size, h])?,
            position: tensors
                .get(&name("embeddings.position_embeddings.weight"), &[config.max_position_embeddings, h])?,
            token_type: tensors.get(&name("embeddings.token_type_embeddings.weight"), &[config.type_vocab_size, h])?,
            embedding_norm: LayerNorm::load(tensors, &name("embeddings.LayerNorm"), h, eps)?,
            layers,
            config,
        })
    }

    /// The mean of the last hidden states over all tokens, L2-normalized. `ids` must be
    /// non-empty, shorter than `max_position_embeddings` and inside the vocabulary.
    pub(crate) fn embed(&self, ids: &[u32]) -> Vec<f32> {
        let h = self.config.hidden_size;
        let n = ids.len();
        let mut x = Vec::with_capacity(n * h);
        for (pos, &id) in ids.iter().enumerate() {
            let w = &self.word.data[id as usize * h..][..h];
            let p = &self.position.data[pos * h..][..h];
            let t = &self.token_type.data[..h];
            x.extend(w.iter().zip(p).zip(t).map(|((a, b), c)| a + b + c));
        }
        self.embedding_norm.apply(&mut x);
        for layer in &self.layers {
            x = self.layer(layer, &x, n);
        }
        let mut pooled = vec![0f32; h];
        for row in x.chunks_exact(h) {
            pooled.iter_mut().zip(row).for_each(|(p, v)| *p += v / n as f32);
        }
        let norm = pooled.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
        pooled.iter_mut().for_each(|v| *v /= norm);
        pooled
    }

    fn layer(&self, layer: &Layer, x: &[f32], n: usize) -> Vec<f32> {
        let h = self.config.hidden_size;
        let heads = self.config.num_attention_heads;
        let d = h / heads;
        let (q, k, v) = (layer.query.forward(x), layer.key.forward(x), layer.value.forward(x));
        let scale = 1.0 / (d as f32).sqrt();
        let mut context = vec![0f32; n * h];
        let mut scores = vec![0f32; n];
        for head in 0..heads {
            let off = head * d;
            for i in 0..n {
                let qi = &q[i * h + off..][..d];
                for (j, s) in scores.iter_mut().enumerate() {
                    *s = dot(qi, &k[j * h + off..][..d]) * scale;
                }
                let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0.0;
                for s in scores.iter_mut() {
                    *s = (*s - max).exp();
                    sum += *s;
                }
                let out = &mut context[i * h + off..][..d];
                for (j, s) in scores.iter().enumerate() {
                    let p = s / sum;
                    out.iter_mut().zip(&v[j * h + off..][..d]).for_each(|(o, vv)| *o += p * vv);
                }
            }
        }
        let mut attended = layer.attention_out.forward(&context);
        attended.iter_mut().zip(x).for_each(|(a, r)| *a += r);
        layer.attention_norm.apply(&mut attended);
        let mut inter = layer.intermediate.forward(&attended);
        inter.iter_mut().for_each(|v| *v = gelu(*v));
        let mut out = layer.output.forward(&inter);
        out.iter_mut().zip(&attended).for_each(|(o, r)| *o += r);
        layer.output_norm.apply(&mut out);
        out
    }
}

/// The exact (erf) GELU BERT uses.
fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x / std::f32::consts::SQRT_2))
}

/// `erf` by Abramowitz and Stegun 7.1.26 (absolute error below 1.5e-7).
fn erf(x: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let poly = t * (0.254_829_6 + t * (-0.284_496_7 + t * (1.421_413_8 + t * (-1.453_152_1 + t * 1.061_405_4))));
    let y = 1.0 - poly * (-x * x).exp();
    if x < 0.0 { -y } else { y }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_and_gelu_match_known_values() {
        assert!((erf(0.5) - 0.520_499_9).abs() < 1e-6);
        assert!((erf(-1.0) + 0.842_700_8).abs() < 1e-6);
        assert!((gelu(1.0) - 0.841_344_7).abs() < 1e-6);
        assert_eq!(gelu(0.0), 0.0);
    }

    #[test]
    fn dot_covers_the_unrolled_part_and_the_tail() {
        let a: Vec<f32> = (0..11).map(|i| i as f32).collect();
        assert_eq!(dot(&a, &a), (0..11).map(|i| (i * i) as f32).sum::<f32>());
    }

    #[test]
    fn layer_norm_centres_and_scales_each_row() {
        let ln = LayerNorm { weight: vec![1.0; 4], bias: vec![0.0; 4], eps: 0.0 };
        let mut x = vec![1.0, 2.0, 3.0, 4.0, 5.0, 5.0, 5.0, 9.0];
        ln.apply(&mut x);
        for row in x.chunks(4) {
            assert!(row.iter().sum::<f32>().abs() < 1e-5);
            assert!((row.iter().map(|v| v * v).sum::<f32>() / 4.0 - 1.0).abs() < 1e-4);
        }
    }
}
