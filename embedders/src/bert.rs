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
//!
//! [`Precision::Int8`] is the fast path: the dense layers in 8-bit integers through
//! `rten-gemm` (weights per output column, activations per token row with each row's few
//! outliers set aside and multiplied in f32, products in `i32`), attention's two products per
//! head through `rten-gemm`'s f32 kernel, and softmax and layer norms as f32 loops written to
//! vectorize (sums over 16 lanes, a polynomial `exp`), compiled for AVX-512 or AVX2 at run
//! time by `pulp`. Its vectors differ from f32's (cosine ≥ 0.998 on MMLU-Pro questions; test
//! `int8_is_close_to_f32`); the f32 path's loops keep their order of operations.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use rayon::prelude::*;
use rten_gemm::{GemmExecutor, GemmInputA, GemmInputB, GemmOptions, PackedBMatrix};
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
        /// The f32 weights `[in, out]`, for the activations' outliers.
        exact: Vec<f32>,
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
    precision: Precision,
    word: Vec<f32>,
    pos: Vec<f32>,
    type0: Vec<f32>,
    ln: Norm,
    layers: Vec<Layer>,
}

thread_local! {
    /// The int8 path's matrix products, one executor per thread, built once: building one
    /// detects the CPU's kernels, which on serve's short batches was 1.5 % of the time (and an
    /// executor is not `Send`, so the model cannot hold it).
    static GEMM_I8: GemmExecutor<u8, i8, i32> = GemmExecutor::default();
    /// The int8 path's attention products, likewise.
    static GEMM_F32: GemmExecutor<f32> = GemmExecutor::default();
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
        exact: v,
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
            precision,
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
        let mut pool = Pool::default();
        for layer in &self.layers {
            x = self.layer(layer, x, total, &offsets, &mut pool)?;
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
        pool: &mut Pool,
    ) -> candle_core::Result<Vec<f32>> {
        let h = self.shape.hidden_size;
        let heads = self.shape.num_attention_heads;
        let hd = h / heads;
        let qkv = self.product(&x, total, &l.qkv, Then::Nothing, pool)?; // [total, 3h]
        // attention, one text at a time (its own tokens only), every core
        let mut ctx = pool.take(total * h); // every value is written below
        let mut parts: Vec<(&mut [f32], usize, usize)> = Vec::with_capacity(offsets.len());
        let mut rest: &mut [f32] = &mut ctx;
        for w in offsets.windows(2) {
            let (head, tail) = rest.split_at_mut((w[1] - w[0]) * h);
            parts.push((head, w[0], w[1] - w[0]));
            rest = tail;
        }
        let scale = 1.0 / (hd as f32).sqrt();
        match self.precision {
            Precision::Int8 => parts.into_par_iter().try_for_each_init(
                Vec::new,
                |s, (out, start, len)| -> candle_core::Result<()> {
                    let rows = &qkv[start * 3 * h..(start + len) * 3 * h];
                    GEMM_F32.with(|g| attention_gemm(g, rows, out, s, h, heads, scale))
                },
            )?,
            Precision::F32 => attention_exact(&qkv, parts, h, heads, scale)?,
        }
        // output projection + residual, layer norm
        let x1 = self.product(&ctx, total, &l.out, Then::AddNorm(&x, &l.ln1), pool)?;
        // feed-forward with GELU, residual, layer norm
        let f = self.product(&x1, total, &l.ff1, Then::Gelu, pool)?;
        let y = self.product(&f, total, &l.ff2, Then::AddNorm(&x1, &l.ln2), pool)?;
        for done in [x, qkv, ctx, x1, f] {
            pool.give(done);
        }
        Ok(y)
    }
}

/// The buffers a forward pass is done with, for its next layers: fresh allocations of these
/// sizes cost page faults and zeroing (a tenth of the int8 pass's time).
#[derive(Default)]
struct Pool(Vec<Vec<f32>>);

impl Pool {
    /// A buffer of `n` values, whatever they are (the caller writes every one).
    fn take(&mut self, n: usize) -> Vec<f32> {
        let mut v = match self.0.iter().position(|v| v.capacity() >= n) {
            Some(i) => self.0.swap_remove(i),
            None => Vec::with_capacity(n),
        };
        if v.len() >= n {
            v.truncate(n);
        } else {
            v.resize(n, 0.0);
        }
        v
    }

    /// Keep `v` for a later [`Pool::take`].
    fn give(&mut self, v: Vec<f32>) {
        self.0.push(v);
    }
}

/// What follows a dense layer's product and bias, on each output row.
#[derive(Clone, Copy)]
enum Then<'a> {
    /// Nothing.
    Nothing,
    /// GELU.
    Gelu,
    /// Add the residual rows (`[rows, out]`), then the layer norm.
    AddNorm(&'a [f32], &'a Norm),
}

/// The rows of a dense layer's output after its product: `acc` is the f32 product (or,
/// `int8`, the `i32` product's bits, rescaled here), then bias and [`Then`].
struct Rows<'a> {
    y: &'a mut [f32],
    /// Index of `y`'s first row.
    first: usize,
    out: usize,
    b: &'a [f32],
    /// int8: how to rescale the `i32` products.
    int8: Option<Rescale<'a>>,
    then: Then<'a>,
    precision: Precision,
    eps: f64,
}

/// What turns an int8 product back into f32: the weights' column scales and column sums,
/// each activation row's quantization and outliers, and the f32 weights for those.
#[derive(Clone, Copy)]
struct Rescale<'a> {
    scale: &'a [f32],
    col_sum: &'a [i32],
    rows: &'a [RowQuant],
    outliers: &'a [(u32, f32)],
    exact: &'a [f32],
}

impl pulp::WithSimd for Rows<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let out = self.out;
        for (r, row) in self.y.chunks_exact_mut(out).enumerate() {
            let i = self.first + r;
            match self.int8 {
                None => {
                    for (a, b) in row.iter_mut().zip(self.b) {
                        *a += b;
                    }
                }
                Some(Rescale {
                    scale,
                    col_sum,
                    rows: rows_q,
                    outliers,
                    exact,
                }) => {
                    let RowQuant { scale: sa, zero, n } = rows_q[i];
                    let zero = zero as i32;
                    for (((v, s), b), c) in row.iter_mut().zip(scale).zip(self.b).zip(col_sum) {
                        let a = v.to_bits() as i32;
                        *v = (a - zero * c) as f32 * (sa * s) + b;
                    }
                    // the outliers (coded as 0 in the product) times their f32 weight rows
                    for &(j, xj) in &outliers[i * MAX_OUTLIERS..][..n as usize] {
                        let w = &exact[j as usize * out..(j as usize + 1) * out];
                        for (v, &wv) in row.iter_mut().zip(w) {
                            *v = xj.mul_add(wv, *v);
                        }
                    }
                }
            }
            match self.then {
                Then::Nothing => {}
                Then::Gelu => row.iter_mut().for_each(|a| *a = gelu(*a)),
                Then::AddNorm(res, n) => {
                    for (a, b) in row.iter_mut().zip(&res[i * out..(i + 1) * out]) {
                        *a += b;
                    }
                    match self.precision {
                        Precision::F32 => layer_norm(row, n, self.eps),
                        Precision::Int8 => layer_norm_fast(row, n, self.eps),
                    }
                }
            }
        }
    }
}

impl Bert {
    /// `x [rows, in] · w [in, out] + b`, then `then`, on every core. The elementwise loops run
    /// in blocks of rows compiled for the widest vector instructions the CPU has (AVX-512,
    /// AVX2 or baseline, chosen at run time by `pulp`); in the f32 path they keep their order
    /// of operations, so its results are the baseline build's, bit for bit.
    fn product(
        &self,
        x: &[f32],
        rows: usize,
        d: &Dense,
        then: Then,
        pool: &mut Pool,
    ) -> candle_core::Result<Vec<f32>> {
        const BLOCK: usize = 32;
        let (mut y, out, int8) = match &d.w {
            Weights::F32(w) => {
                let (inp, out) = w.dims2()?;
                let xt = Tensor::from_slice(x, (rows, inp), &Device::Cpu)?;
                (to_vec(&xt.matmul(w)?)?, out, None)
            }
            Weights::Int8 {
                packed,
                scale,
                col_sum,
                exact,
                inp,
                out,
            } => {
                let (inp, out) = (*inp, *out);
                let (y, q) = GEMM_I8.with(|gemm| -> candle_core::Result<_> {
                    // without VNNI the x86 int8 kernels add pairs in i16, which saturates
                    // unless the u8 side keeps to 7 bits
                    let levels = if gemm.may_saturate() { 127.0 } else { 255.0 };
                    let q = quantize_rows(x, inp, levels);
                    // the products of the codes as they are, written over the f32 output's
                    // memory (its bits are rescaled in place); each row's zero point is taken
                    // off then (`zero * column sum`), not by rten-gemm's `a_quant`, whose
                    // per-row zero points came out wrong past the first row tile in 0.27
                    // (checked against a plain loop)
                    let mut y = pool.take(rows * out); // overwritten by the product
                    gemm.gemm(
                        bytemuck::cast_slice_mut::<f32, i32>(&mut y),
                        GemmInputA::Unpacked(NdTensorView::from_data([rows, inp], &q.codes[..])),
                        GemmInputB::Packed(packed),
                        GemmOptions::default(),
                    )
                    .map_err(|e| candle_core::Error::Msg(format!("int8 product: {e}")))?;
                    Ok((y, q))
                })?;
                (y, out, Some((&scale[..], &col_sum[..], &exact[..], q)))
            }
        };
        let int8 = int8.as_ref().map(|(scale, col_sum, exact, q)| Rescale {
            scale,
            col_sum,
            rows: &q.rows,
            outliers: &q.outliers,
            exact,
        });
        let arch = pulp::Arch::new();
        y.par_chunks_mut(out * BLOCK)
            .enumerate()
            .for_each(|(k, block)| {
                arch.dispatch(Rows {
                    y: block,
                    first: k * BLOCK,
                    out,
                    b: &d.b,
                    int8,
                    then,
                    precision: self.precision,
                    eps: self.shape.layer_norm_eps,
                })
            });
        Ok(y)
    }
}

/// Values of an activation row larger in magnitude than this many times the row's root mean
/// square are its outliers: left out of its int8 codes and multiplied by their f32 weight rows
/// instead. A few channels of BERT's activations run 10-100x the rest; spreading a row's 256
/// levels over them left the other values a few levels each, and activations were half of
/// int8's error (measured on MMLU-Pro's 11,984 questions with the bench: cosine to f32 min
/// 0.9969 and mean 0.99903 without, 0.9980 and 0.99962 with outliers over 6x, 1.5 per row).
const OUTLIER_RMS: f32 = 6.0;

/// At most this many outliers per row (the largest, when more pass [`OUTLIER_RMS`]).
const MAX_OUTLIERS: usize = 8;

/// How one activation row was quantized: `x ≈ scale * (code - zero)` and its outliers.
#[derive(Clone, Copy)]
struct RowQuant {
    scale: f32,
    zero: u8,
    /// The row's outliers (`(index, value)` in its [`MAX_OUTLIERS`] slots).
    n: u8,
}

/// Activation rows quantized by [`quantize_rows`].
struct Quantized {
    codes: Vec<u8>,
    rows: Vec<RowQuant>,
    /// [`MAX_OUTLIERS`] slots per row, the first [`RowQuant::n`] of them used.
    outliers: Vec<(u32, f32)>,
}

/// Asymmetric quantization of each row of `x [rows, n]` to `0..=levels`: the row's outliers
/// set aside, the range of the rest (widened to hold 0) spread over the levels.
fn quantize_rows(x: &[f32], n: usize, levels: f32) -> Quantized {
    let rows = x.len() / n;
    let mut q = Quantized {
        codes: vec![0u8; x.len()],
        rows: vec![
            RowQuant {
                scale: 1.0,
                zero: 0,
                n: 0
            };
            rows
        ],
        outliers: vec![(0, 0.0); rows * MAX_OUTLIERS],
    };
    q.codes
        .par_chunks_mut(n)
        .zip(x.par_chunks(n))
        .zip(q.rows.par_iter_mut())
        .zip(q.outliers.par_chunks_mut(MAX_OUTLIERS))
        .for_each(|(((codes, row), p), outliers)| {
            pulp::Arch::new().dispatch(Quantize {
                row,
                codes,
                p,
                outliers,
                levels,
            })
        });
    q
}

/// [`quantize_row`] as a `pulp` operation.
struct Quantize<'a> {
    row: &'a [f32],
    codes: &'a mut [u8],
    p: &'a mut RowQuant,
    outliers: &'a mut [(u32, f32)],
    levels: f32,
}

impl pulp::WithSimd for Quantize<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        quantize_row(self.row, self.codes, self.p, self.outliers, self.levels)
    }
}

/// One row of [`quantize_rows`].
#[inline(always)]
fn quantize_row(
    row: &[f32],
    codes: &mut [u8],
    p: &mut RowQuant,
    outliers: &mut [(u32, f32)],
    levels: f32,
) {
    let rms = (lane_sum(row, |v| v * v) / row.len() as f32).sqrt();
    let mut cut = OUTLIER_RMS * rms;
    // the outliers: blocks of 16 with a value past `cut`, looked at one by one (counted as
    // integers, which vectorizes where a fold of `f32::max` or an early exit would not)
    let over = |v: &[f32]| v.iter().fold(0u32, |n, x| n + (x.abs() > cut) as u32);
    let mut found = 0usize;
    for (b, block) in row.chunks(16).enumerate() {
        if over(block) == 0 {
            continue;
        }
        for (k, &v) in block.iter().enumerate() {
            if v.abs() <= cut {
                continue;
            }
            let at = (b * 16 + k) as u32;
            if found < MAX_OUTLIERS {
                outliers[found] = (at, v);
                found += 1;
            } else if let Some(small) = (0..MAX_OUTLIERS)
                .min_by(|&i, &j| outliers[i].1.abs().total_cmp(&outliers[j].1.abs()))
                && outliers[small].1.abs() < v.abs()
            {
                outliers[small] = (at, v);
            }
        }
    }
    if found == MAX_OUTLIERS {
        // more may have passed: the slots hold the largest, so the cut becomes the smallest
        // magnitude kept; the values of that size go in the codes instead
        cut = outliers.iter().fold(f32::INFINITY, |m, o| m.min(o.1.abs()));
        let mut k = 0;
        for i in 0..MAX_OUTLIERS {
            if outliers[i].1.abs() > cut {
                outliers[k] = outliers[i];
                k += 1;
            }
        }
        found = k;
    }
    // every value over the cut is an outlier; the rest are coded (the outliers as 0)
    let inner = |v: f32| if v.abs() > cut { 0.0 } else { v };
    let (lo, hi) = (
        lanes(row, 0.0, inner, f32::min),
        lanes(row, 0.0, inner, f32::max),
    );
    let scale = if hi > lo { (hi - lo) / levels } else { 1.0 };
    let inv = 1.0 / scale;
    let zero = (-lo * inv).round().clamp(0.0, levels);
    for (c, &v) in codes.iter_mut().zip(row) {
        // rounded to the nearest code by adding 2^23, whose float has no fraction bits left:
        // the code is the low byte (a bit trick because `as` casts from f32 do not vectorize)
        let t = (inner(v) * inv + zero).clamp(0.0, levels) + 8_388_608.0;
        *c = t.to_bits() as u8;
    }
    *p = RowQuant {
        scale,
        zero: zero as u8,
        n: found as u8,
    };
}

/// Attention of each text (`parts`: its output rows, first token, length) on its own tokens,
/// through candle's batched matrix products: BERT's arithmetic, as candle computes it.
fn attention_exact(
    qkv: &[f32],
    parts: Vec<(&mut [f32], usize, usize)>,
    h: usize,
    heads: usize,
    scale: f32,
) -> candle_core::Result<()> {
    let hd = h / heads;
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
        })
}

/// Attention of one text in f32, for the int8 path: `rows` its `[len, 3h]` query-key-value
/// rows, `out` its `[len, h]` context rows, `scratch` any buffer (resized here). Each head's
/// two products (queries by keys, scores by values) go through `rten-gemm`'s f32 kernel on
/// strided views of `rows` (no copies); the softmax is [`softmax_fast`]'s. The same sums as
/// [`attention_exact`] in another order: equal to float rounding.
fn attention_gemm(
    gemm: &GemmExecutor<f32>,
    rows: &[f32],
    out: &mut [f32],
    scratch: &mut Vec<f32>,
    h: usize,
    heads: usize,
    scale: f32,
) -> candle_core::Result<()> {
    let (len, hd) = (rows.len() / (3 * h), h / heads);
    let err = |e: &dyn std::fmt::Display| candle_core::Error::Msg(format!("attention: {e}"));
    let view = |at: usize, shape: [usize; 2], strides: [usize; 2]| {
        NdTensorView::from_slice_with_strides(shape, &rows[at..], strides).map_err(|e| err(&e))
    };
    // one scratch buffer, reused from text to text: the scores, then one head's context
    scratch.resize(len * len + len * hd, 0.0);
    let (s, ctx) = scratch.split_at_mut(len * len);
    for head in 0..heads {
        // scores: this head's queries `[len, hd]` by its keys transposed `[hd, len]`
        let q = view(head * hd, [len, hd], [3 * h, 1])?;
        let kt = view(h + head * hd, [hd, len], [1, 3 * h])?;
        gemm.gemm(
            s,
            GemmInputA::Unpacked(q),
            GemmInputB::Unpacked(kt),
            GemmOptions::default(),
        )
        .map_err(|e| err(&e))?;
        pulp::Arch::new().dispatch(Softmax { s, len, scale });
        // context: the scores `[len, len]` by this head's values `[len, hd]`
        let p = NdTensorView::from_data([len, len], &s[..]);
        let v = view(2 * h + head * hd, [len, hd], [3 * h, 1])?;
        gemm.gemm(
            ctx,
            GemmInputA::Unpacked(p),
            GemmInputB::Unpacked(v),
            GemmOptions::default(),
        )
        .map_err(|e| err(&e))?;
        for (o, c) in out.chunks_exact_mut(h).zip(ctx.chunks_exact(hd)) {
            o[head * hd..(head + 1) * hd].copy_from_slice(c);
        }
    }
    Ok(())
}

/// [`softmax_fast`] on each row of `len` values of `s`, as a `pulp` operation: compiled for
/// the CPU's widest vectors.
struct Softmax<'a> {
    s: &'a mut [f32],
    len: usize,
    scale: f32,
}

impl pulp::WithSimd for Softmax<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        self.s
            .chunks_exact_mut(self.len)
            .for_each(|row| softmax_fast(row, self.scale));
    }
}

/// `row * scale`, then softmax, in place; the max and the sum over 16 lanes (so they
/// vectorize).
#[inline(always)]
fn softmax_fast(row: &mut [f32], scale: f32) {
    let max = lanes(row, f32::NEG_INFINITY, |v| v, f32::max) * scale;
    row.iter_mut().for_each(|v| *v = exp_fast(*v * scale - max));
    let inv = 1.0 / lane_sum(row, |v| v);
    row.iter_mut().for_each(|v| *v *= inv);
}

/// `v`'s values through `map`, reduced by the associative `f` over 16 independent lanes, then
/// across the lanes: an order that vectorizes.
#[inline(always)]
fn lanes(v: &[f32], init: f32, map: impl Fn(f32) -> f32, f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [init; 16];
    let chunks = v.chunks_exact(16);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a = f(*a, map(x));
        }
    }
    let mut out = rest.iter().fold(init, |a, &x| f(a, map(x)));
    for a in acc {
        out = f(out, a);
    }
    out
}

/// The sum of `v`'s values through `map`, over [`lanes`].
#[inline(always)]
fn lane_sum(v: &[f32], map: impl Fn(f32) -> f32) -> f32 {
    lanes(v, 0.0, map, |a, b| a + b)
}

/// `e^x` for `x <= 0` (softmax's exponents): `2^n * e^r`, `r` in `[-ln2/2, ln2/2]`, `e^r` by
/// its Taylor polynomial to `r^6` (relative error under 2e-7); written here because `f32::exp`
/// is a libm call per element, which does not vectorize.
#[inline(always)]
fn exp_fast(x: f32) -> f32 {
    let x = x.max(-87.0);
    let n = (x * std::f32::consts::LOG2_E + 0.5).floor();
    // ln 2 in two parts (Cody and Waite), so that `r` keeps its low bits
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let p = 1.0
        + r * (1.0
            + r * (1.0 / 2.0
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // 2^n from the bits of 2^23 + 127 + n, whose low bits are the biased exponent (`n as i32`
    // would not vectorize)
    f32::from_bits((n + 8_388_735.0).to_bits() << 23) * p
}

/// Layer norm in f32 with [`lanes`]' sums, for the int8 path.
#[inline(always)]
fn layer_norm_fast(row: &mut [f32], n: &Norm, eps: f64) {
    let len = row.len() as f32;
    let mean = lane_sum(row, |v| v) / len;
    let var = lane_sum(row, |v| (v - mean) * (v - mean)) / len;
    let inv = 1.0 / (var + eps as f32).sqrt();
    for ((v, g), b) in row.iter_mut().zip(&n.g).zip(&n.b) {
        *v = (*v - mean) * inv * g + b;
    }
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

#[inline(always)]
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
#[inline(always)]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_fast_is_exp() {
        for i in 0..8700 {
            let x = -(i as f32) * 0.01;
            let (a, b) = (exp_fast(x), x.exp());
            assert!((a - b).abs() <= 3e-7 * b + 1e-38, "{x}: {a} {b}");
        }
    }

    /// Each value of `row` back from its codes and outliers.
    fn decode(codes: &[u8], p: &RowQuant, outliers: &[(u32, f32)]) -> Vec<f32> {
        let mut x: Vec<f32> = codes
            .iter()
            .map(|&c| p.scale * (c as f32 - p.zero as f32))
            .collect();
        for &(j, v) in &outliers[..p.n as usize] {
            assert_eq!(codes[j as usize], p.zero, "an outlier is coded as 0");
            x[j as usize] += v;
        }
        x
    }

    #[test]
    fn rows_quantize_with_their_outliers_set_aside() {
        let quantize = |row: &[f32]| {
            let mut codes = vec![0u8; row.len()];
            let mut p = RowQuant {
                scale: 0.0,
                zero: 0,
                n: 0,
            };
            let mut outliers = [(0u32, 0f32); MAX_OUTLIERS];
            quantize_row(row, &mut codes, &mut p, &mut outliers, 255.0);
            let back = decode(&codes, &p, &outliers);
            (p, back, outliers)
        };
        // 384 values in [-1, 1] and two outliers: those two exact, the rest to half a level
        let mut row: Vec<f32> = (0..384)
            .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
            .collect();
        row[5] = 60.0;
        row[300] = -45.0;
        let (p, back, outliers) = quantize(&row);
        assert_eq!(p.n, 2);
        assert_eq!(&outliers[..2], &[(5, 60.0), (300, -45.0)]);
        assert!(p.scale <= 2.0 / 255.0 + 1e-6, "scale {}", p.scale);
        for (a, b) in row.iter().zip(&back) {
            assert!((a - b).abs() <= p.scale / 2.0 + 1e-6, "{a} {b}");
        }
        // more outliers than slots, some of one size: the largest kept, every value back
        let mut row: Vec<f32> = (0..1536)
            .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
            .collect();
        row[5] = 60.0;
        row[300] = -45.0;
        for i in 0..12 {
            row[20 * i + 1] = if i < 6 { 30.0 } else { 20.0 + i as f32 };
        }
        let (p, back, outliers) = quantize(&row);
        // 14 pass the cut (60, -45, 26 to 31 and seven 30s); the slots keep the 8 largest, then
        // the 30s, tied at the smallest kept, go in the codes: 60, -45 and 31 stay outliers
        assert_eq!(p.n, 3, "{outliers:?}");
        assert!(p.scale <= 62.0 / 255.0, "scale {}", p.scale);
        for (a, b) in row.iter().zip(&back) {
            assert!((a - b).abs() <= p.scale / 2.0 + 1e-5, "{a} {b}");
        }
        // no outliers: the whole range in the codes
        let flat: Vec<f32> = (0..64).map(|i| i as f32 / 64.0).collect();
        let (p, back, _) = quantize(&flat);
        assert_eq!(p.n, 0);
        for (a, b) in flat.iter().zip(&back) {
            assert!((a - b).abs() <= p.scale / 2.0 + 1e-6, "{a} {b}");
        }
    }

    #[test]
    fn gemm_attention_is_attention() {
        // heads of 32 and of 64, one token to MiniLM's longest text
        for (len, h, heads) in [
            (13usize, 64usize, 2usize),
            (1, 384, 12),
            (21, 128, 2),
            (256, 384, 12),
        ] {
            let rows: Vec<f32> = (0..len * 3 * h)
                .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
                .collect();
            let mut fast = vec![0f32; len * h];
            let gemm = GemmExecutor::<f32>::default();
            attention_gemm(&gemm, &rows, &mut fast, &mut Vec::new(), h, heads, 0.5).unwrap();
            let mut exact = vec![0f32; len * h];
            attention_exact(&rows, vec![(&mut exact[..], 0, len)], h, heads, 0.5).unwrap();
            for (a, b) in fast.iter().zip(&exact) {
                assert!((a - b).abs() < 1e-5, "{len} {h}: {a} {b}");
            }
        }
    }
}
