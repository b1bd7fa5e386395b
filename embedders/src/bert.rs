//! The BERT encoder forward pass of MiniLM, written for throughput on CPU.
//!
//! Written here rather than run through `candle_transformers::models::bert`, which rgd used
//! before (measured with `rgd bench embed` on 2 cores: 35-49 questions/s, of which the matrix
//! products were under a third; the rest went to one allocation per elementwise operation,
//! scalar `erf`/`exp` and the padding of every batch to its longest text). Here:
//!
//! - no padding: the texts of a batch are packed row after row, so the dense layers are one
//!   large matrix product over all their tokens (both cores), and attention runs per text on
//!   exactly its own tokens (which also makes the attention mask unnecessary);
//! - the matrix products are candle's (the `gemm` crate, AVX-512 kernels where the CPU has
//!   them); biases, residuals, layer norms, GELU and softmax are fused loops over rows, run on
//!   every core;
//! - the math is BERT's exactly (GELU with `erf`, layer norm with the model's epsilon), so the
//!   vectors equal candle's to float rounding (test `matches_candle_bert`).

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use rayon::prelude::*;
use rten_gemm::{
    GemmExecutor, GemmInputA, GemmInputB, GemmOptions, PackedBMatrix,
};
use rten_tensor::NdTensorView;

/// Settings read from the model's `config.json`.
#[derive(Clone, Debug, serde::Deserialize)]
pub(crate) struct BertShape {
    pub hidden_size: usize,
    pub num_attention_heads: usize,
    pub num_hidden_layers: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub hidden_act: Option<String>,
}

/// The arithmetic of the dense layers (attention, layer norms and pooling are f32 in both).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Precision {
    /// f32 weights and activations (candle's matrix products).
    F32,
    /// int8: weights quantized once per output column (symmetric, `i8`), activations per token
    /// row as each product runs (asymmetric, `u8`), products in `i32` by `rten-gemm`'s int8
    /// kernels (AVX-512 VNNI where the CPU has it), rescaled to f32 before the bias.
    Int8,
}

struct Dense {
    w: Weights,
    b: Vec<f32>,
}

enum Weights {
    /// `[in, out]`, contiguous.
    F32(Tensor),
    /// `[in, out]` quantized and packed for the int8 kernel, and each column's scale.
    Int8 {
        packed: PackedBMatrix<i8>,
        scale: Vec<f32>,
        /// Each column's sum of codes (to take the activations' zero points off).
        col_sum: Vec<i32>,
        inp: usize,
        out: usize,
    },
}

struct Norm {
    g: Vec<f32>,
    b: Vec<f32>,
}

struct Layer {
    qkv: Dense,
    out: Dense,
    ln1: Norm,
    ff1: Dense,
    ff2: Dense,
    ln2: Norm,
}

/// A loaded BERT encoder.
pub(crate) struct Bert {
    shape: BertShape,
    word: Vec<f32>,
    pos: Vec<f32>,
    type0: Vec<f32>,
    ln: Norm,
    layers: Vec<Layer>,
}

fn vec1(vb: &VarBuilder, name: &str, n: usize) -> candle_core::Result<Vec<f32>> {
    vb.get(n, name)?.to_vec1::<f32>()
}

fn dense(
    vb: &VarBuilder,
    names: &[&str],
    out: usize,
    inp: usize,
    precision: Precision,
) -> candle_core::Result<Dense> {
    // `[out, in]` as stored; several are stacked along `out` (query, key, value -> one product)
    let mut ws = Vec::new();
    let mut b = Vec::new();
    for n in names {
        ws.push(vb.get((out, inp), &format!("{n}.weight"))?);
        b.extend(vec1(vb, &format!("{n}.bias"), out)?);
    }
    let w = Tensor::cat(&ws, 0)?.t()?.contiguous()?;
    let w = match precision {
        Precision::F32 => Weights::F32(w),
        Precision::Int8 => quantize_weights(&w)?,
    };
    Ok(Dense { w, b })
}

/// Symmetric int8 quantization of each output column of `w [in, out]` (its largest magnitude
/// maps to 127), packed once for the int8 kernel.
fn quantize_weights(w: &Tensor) -> candle_core::Result<Weights> {
    let (inp, out) = w.dims2()?;
    let v = to_vec(w)?;
    let mut scale = vec![0f32; out];
    for row in v.chunks_exact(out) {
        for (s, x) in scale.iter_mut().zip(row) {
            *s = s.max(x.abs());
        }
    }
    for s in scale.iter_mut() {
        *s = if *s > 0.0 { *s / 127.0 } else { 1.0 };
    }
    let q: Vec<i8> = v
        .chunks_exact(out)
        .flat_map(|row| {
            row.iter()
                .zip(&scale)
                .map(|(x, s)| (x / s).round().clamp(-127.0, 127.0) as i8)
        })
        .collect();
    let mut col_sum = vec![0i32; out];
    for row in q.chunks_exact(out) {
        for (c, &v) in col_sum.iter_mut().zip(row) {
            *c += v as i32;
        }
    }
    let gemm = GemmExecutor::<u8, i8, i32>::default();
    let packed = gemm.prepack_b(NdTensorView::from_data([inp, out], &q[..]));
    Ok(Weights::Int8 {
        packed,
        scale,
        col_sum,
        inp,
        out,
    })
}

fn norm(vb: &VarBuilder, name: &str, n: usize) -> candle_core::Result<Norm> {
    Ok(Norm {
        g: vec1(vb, &format!("{name}.weight"), n)?,
        b: vec1(vb, &format!("{name}.bias"), n)?,
    })
}

impl Bert {
    /// Load the weights (safetensors bytes) of a `BertModel` with this shape.
    pub(crate) fn load(
        bytes: Vec<u8>,
        shape: BertShape,
        precision: Precision,
    ) -> candle_core::Result<Bert> {
        if let Some(act) = &shape.hidden_act
            && act != "gelu"
        {
            candle_core::bail!("hidden_act `{act}`: only `gelu` (erf) is implemented");
        }
        if shape.num_attention_heads == 0
            || !shape.hidden_size.is_multiple_of(shape.num_attention_heads)
        {
            candle_core::bail!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                shape.hidden_size,
                shape.num_attention_heads
            );
        }
        let vb = VarBuilder::from_buffered_safetensors(bytes, DType::F32, &Device::Cpu)?;
        let (h, f) = (shape.hidden_size, shape.intermediate_size);
        let e = vb.pp("embeddings");
        let word = e
            .get_unchecked_dtype("word_embeddings.weight", DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        if !word.len().is_multiple_of(h) {
            candle_core::bail!("word_embeddings: {} values, not rows of {h}", word.len());
        }
        let pos = e
            .get(
                (shape.max_position_embeddings, h),
                "position_embeddings.weight",
            )?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let type0 = e
            .get_unchecked_dtype("token_type_embeddings.weight", DType::F32)?
            .get(0)?
            .to_vec1::<f32>()?;
        let ln = norm(&e, "LayerNorm", h)?;
        let mut layers = Vec::new();
        for i in 0..shape.num_hidden_layers {
            let l = vb.pp(format!("encoder.layer.{i}"));
            layers.push(Layer {
                qkv: dense(
                    &l,
                    &[
                        "attention.self.query",
                        "attention.self.key",
                        "attention.self.value",
                    ],
                    h,
                    h,
                    precision,
                )?,
                out: dense(&l, &["attention.output.dense"], h, h, precision)?,
                ln1: norm(&l, "attention.output.LayerNorm", h)?,
                ff1: dense(&l, &["intermediate.dense"], f, h, precision)?,
                ff2: dense(&l, &["output.dense"], h, f, precision)?,
                ln2: norm(&l, "output.LayerNorm", h)?,
            });
        }
        Ok(Bert {
            shape,
            word,
            pos,
            type0,
            ln,
            layers,
        })
    }

    /// The largest number of tokens one text may have (position embeddings).
    pub(crate) fn max_tokens(&self) -> usize {
        self.shape.max_position_embeddings
    }

    /// Mean-pooled, L2-normalized sentence vectors of tokenized texts (each non-empty, at most
    /// [`Self::max_tokens`] long, every id below the vocabulary size).
    pub(crate) fn embed(&self, texts: &[&[u32]]) -> candle_core::Result<Vec<Vec<f32>>> {
        let h = self.shape.hidden_size;
        let vocab = self.word.len() / h;
        let mut offsets = Vec::with_capacity(texts.len() + 1);
        offsets.push(0usize);
        for t in texts {
            if t.is_empty() || t.len() > self.max_tokens() {
                candle_core::bail!("a text of {} tokens (1..={})", t.len(), self.max_tokens());
            }
            if let Some(&bad) = t.iter().find(|&&id| id as usize >= vocab) {
                candle_core::bail!("token id {bad} outside the vocabulary ({vocab})");
            }
            offsets.push(offsets.last().copied().unwrap_or(0) + t.len());
        }
        let total = *offsets.last().unwrap_or(&0);
        // embeddings: word + position + token type 0, then the layer norm
        let mut x = vec![0f32; total * h];
        let tokens: Vec<(u32, usize)> = texts
            .iter()
            .flat_map(|t| t.iter().enumerate().map(|(p, &id)| (id, p)))
            .collect();
        x.par_chunks_mut(h)
            .zip(&tokens)
            .for_each(|(row, &(id, p))| {
                let w = &self.word[id as usize * h..(id as usize + 1) * h];
                let ps = &self.pos[p * h..(p + 1) * h];
                for (((r, a), b), c) in row.iter_mut().zip(w).zip(ps).zip(&self.type0) {
                    *r = a + b + c;
                }
                layer_norm(row, &self.ln, self.shape.layer_norm_eps);
            });
        for layer in &self.layers {
            x = self.layer(layer, x, total, &offsets)?;
        }
        // mean pooling over each text's tokens, L2 normalization
        Ok(offsets
            .windows(2)
            .map(|w| {
                let mut v = vec![0f64; h];
                for row in x[w[0] * h..w[1] * h].chunks_exact(h) {
                    for (a, b) in v.iter_mut().zip(row) {
                        *a += *b as f64;
                    }
                }
                let n = (w[1] - w[0]) as f64;
                let mean: Vec<f64> = v.iter().map(|a| a / n).collect();
                let norm = mean.iter().map(|a| a * a).sum::<f64>().sqrt().max(1e-12);
                mean.iter().map(|a| (a / norm) as f32).collect()
            })
            .collect())
    }

    fn layer(
        &self,
        l: &Layer,
        x: Vec<f32>,
        total: usize,
        offsets: &[usize],
    ) -> candle_core::Result<Vec<f32>> {
        let h = self.shape.hidden_size;
        let heads = self.shape.num_attention_heads;
        let hd = h / heads;
        let eps = self.shape.layer_norm_eps;
        let qkv = product(&x, total, &l.qkv, |_| {})?; // [total, 3h]
        // attention, one text at a time (its own tokens only), every core
        let mut ctx = vec![0f32; total * h];
        let mut parts: Vec<(&mut [f32], usize, usize)> = Vec::with_capacity(offsets.len());
        let mut rest: &mut [f32] = &mut ctx;
        for w in offsets.windows(2) {
            let (head, tail) = rest.split_at_mut((w[1] - w[0]) * h);
            parts.push((head, w[0], w[1] - w[0]));
            rest = tail;
        }
        let scale = 1.0 / (hd as f32).sqrt();
        parts
            .into_par_iter()
            .try_for_each(|(out, start, len)| -> candle_core::Result<()> {
                let rows = &qkv[start * 3 * h..(start + len) * 3 * h];
                // q, k, v of this text as [heads, len, hd]
                let gather = |part: usize| {
                    let mut m = vec![0f32; heads * len * hd];
                    for (head, block) in m.chunks_exact_mut(len * hd).enumerate() {
                        for (t, dst) in block.chunks_exact_mut(hd).enumerate() {
                            let at = t * 3 * h + part * h + head * hd;
                            dst.copy_from_slice(&rows[at..at + hd]);
                        }
                    }
                    Tensor::from_vec(m, (heads, len, hd), &Device::Cpu)
                };
                let (q, k, v) = (gather(0)?, gather(1)?, gather(2)?);
                let mut p = to_vec(&q.matmul(&k.t()?)?)?; // [heads, len, len]
                p.chunks_exact_mut(len).for_each(|row| softmax(row, scale));
                let p = Tensor::from_vec(p, (heads, len, len), &Device::Cpu)?;
                let o = to_vec(&p.matmul(&v)?)?; // [heads, len, hd]
                for (head, block) in o.chunks_exact(len * hd).enumerate() {
                    for (t, src) in block.chunks_exact(hd).enumerate() {
                        out[t * h + head * hd..t * h + (head + 1) * hd].copy_from_slice(src);
                    }
                }
                Ok(())
            })?;
        // output projection + residual, layer norm
        let x1 = product(&ctx, total, &l.out, |_| {})?;
        let mut x1 = x1;
        x1.par_chunks_mut(h)
            .zip(x.par_chunks(h))
            .for_each(|(r, res)| {
                for (a, b) in r.iter_mut().zip(res) {
                    *a += b;
                }
                layer_norm(r, &l.ln1, eps);
            });
        // feed-forward with GELU, residual, layer norm
        let f = product(&x1, total, &l.ff1, |row| {
            for a in row.iter_mut() {
                *a = gelu(*a);
            }
        })?;
        let mut y = product(&f, total, &l.ff2, |_| {})?;
        y.par_chunks_mut(h)
            .zip(x1.par_chunks(h))
            .for_each(|(r, res)| {
                for (a, b) in r.iter_mut().zip(res) {
                    *a += b;
                }
                layer_norm(r, &l.ln2, eps);
            });
        Ok(y)
    }
}

/// `x [rows, in] · w [in, out] + b`, then `then` on each output row (every core).
fn product(
    x: &[f32],
    rows: usize,
    d: &Dense,
    then: impl Fn(&mut [f32]) + Sync,
) -> candle_core::Result<Vec<f32>> {
    match &d.w {
        Weights::F32(w) => {
            let (inp, out) = w.dims2()?;
            let xt = Tensor::from_slice(x, (rows, inp), &Device::Cpu)?;
            let mut y = to_vec(&xt.matmul(w)?)?;
            y.par_chunks_mut(out).for_each(|row| {
                for (a, b) in row.iter_mut().zip(&d.b) {
                    *a += b;
                }
                then(row);
            });
            Ok(y)
        }
        Weights::Int8 {
            packed,
            scale,
            col_sum,
            inp,
            out,
        } => {
            let (inp, out) = (*inp, *out);
            let gemm = GemmExecutor::<u8, i8, i32>::default();
            // without VNNI the x86 int8 kernels add pairs in i16, which saturates unless
            // the u8 side keeps to 7 bits
            let levels = if gemm.may_saturate() { 127.0 } else { 255.0 };
            let (xq, rows_q) = quantize_rows(x, inp, levels);
            // the products of the codes as they are; each row's zero point is taken off below
            // (`zero * column sum`), not by rten-gemm's `a_quant`, whose per-row zero points
            // came out wrong past the first row tile in 0.27 (checked against a plain loop)
            let mut acc = vec![0i32; rows * out];
            gemm.gemm(
                &mut acc,
                GemmInputA::Unpacked(NdTensorView::from_data([rows, inp], &xq[..])),
                GemmInputB::Packed(packed),
                GemmOptions::default(),
            )
            .map_err(|e| candle_core::Error::Msg(format!("int8 product: {e}")))?;
            let mut y = vec![0f32; rows * out];
            y.par_chunks_mut(out)
                .zip(acc.par_chunks(out))
                .zip(&rows_q)
                .for_each(|((row, acc), &(sa, zero))| {
                    let zero = zero as i32;
                    for ((((v, &a), s), b), c) in
                        row.iter_mut().zip(acc).zip(scale).zip(&d.b).zip(col_sum)
                    {
                        *v = (a - zero * c) as f32 * (sa * s) + b;
                    }
                    then(row);
                });
            Ok(y)
        }
    }
}

/// Asymmetric quantization of each row of `x [rows, n]` to `0..=levels`: the row's range
/// (widened to hold 0) spread over the levels. Returns the codes and each row's
/// `(scale, zero point)`, so that `x ≈ scale * (code - zero)`.
fn quantize_rows(x: &[f32], n: usize, levels: f32) -> (Vec<u8>, Vec<(f32, u8)>) {
    let mut q = vec![0u8; x.len()];
    let mut params = vec![(1f32, 0u8); x.len() / n];
    q.par_chunks_mut(n)
        .zip(x.par_chunks(n))
        .zip(params.par_iter_mut())
        .for_each(|((q, row), p)| {
            let (lo, hi) = row
                .iter()
                .fold((0f32, 0f32), |(lo, hi), &v| (lo.min(v), hi.max(v)));
            let scale = if hi > lo { (hi - lo) / levels } else { 1.0 };
            let inv = 1.0 / scale;
            let zero = (-lo * inv).round().clamp(0.0, levels);
            for (c, &v) in q.iter_mut().zip(row) {
                // `+ 0.5` then truncation rounds (the value is clamped non-negative first)
                *c = (v * inv + zero + 0.5).clamp(0.0, levels) as u8;
            }
            *p = (scale, zero as u8);
        });
    (q, params)
}

/// The values of a contiguous f32 tensor.
fn to_vec(t: &Tensor) -> candle_core::Result<Vec<f32>> {
    t.flatten_all()?.to_vec1::<f32>()
}

/// `row * scale`, then softmax, in place.
fn softmax(row: &mut [f32], scale: f32) {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) * scale;
    let mut sum = 0f32;
    for v in row.iter_mut() {
        *v = (*v * scale - max).exp();
        sum += *v;
    }
    let inv = 1.0 / sum;
    row.iter_mut().for_each(|v| *v *= inv);
}

fn layer_norm(row: &mut [f32], n: &Norm, eps: f64) {
    let len = row.len() as f64;
    let mean = row.iter().map(|&v| v as f64).sum::<f64>() / len;
    let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / len;
    let inv = 1.0 / (var + eps).sqrt();
    for ((v, g), b) in row.iter_mut().zip(&n.g).zip(&n.b) {
        *v = ((*v as f64 - mean) * inv) as f32 * g + b;
    }
}

/// GELU with the error function, as BERT's `gelu`. `erf` is Abramowitz & Stegun 7.1.28
/// (`1 - (1 + a1 x + ... + a6 x^6)^-16`; 3.4e-6 from the exact `erf` in f32, GELU within
/// 6.3e-7 on [0, 12]): a polynomial and a division, which vectorize, where `libm::erff`
/// was an eighth of the embedding time.
fn gelu(x: f32) -> f32 {
    const A: [f32; 6] = [
        0.070_523_08,
        0.042_282_01,
        0.009_270_527,
        0.000_152_014_3,
        0.000_276_567_2,
        0.000_043_063_8,
    ];
    let z = (x * std::f32::consts::FRAC_1_SQRT_2).abs().min(12.0);
    let p = 1.0 + z * (A[0] + z * (A[1] + z * (A[2] + z * (A[3] + z * (A[4] + z * A[5])))));
    let p2 = p * p;
    let p4 = p2 * p2;
    let p8 = p4 * p4;
    let erf = (1.0 - 1.0 / (p8 * p8)).copysign(x);
    0.5 * x * (1.0 + erf)
}
