//! Learned query-answer routers, trained with candle on correctness against the answer key
//! (binary cross-entropy, AdamW, seeded minibatches); inference is plain ndarray, so a saved
//! router needs no candle at run time.
//!
//! - `mlp`: query embedding -> hidden layer (ReLU) -> one logit per model.
//! - `mf`: matrix factorization as in RouteLLM / EmbedLLM: the query embedding is projected to
//!   `rank` dimensions and scored against a learned vector per model (plus a bias):
//!   logit(q, m) = v_m . (P e_q) + b_m.
//! - `ranker`: a listwise ranker over the pool in the spirit of LLMRank (ListNet loss): the
//!   same network, its logits a softmax over models, trained towards the distribution that
//!   spreads a question's mass evenly over the models that answer it right (questions no
//!   model answers right are skipped).
//!
//! Training stops early: the weights of the epoch with the lowest loss on a held-out share of
//! the training questions are kept. Weights are initialized from a seeded ChaCha stream (candle's CPU generator cannot be
//! seeded), so training is deterministic for a seed.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use ndarray::{Array1, Array2};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use rgd_core::{Context, Query, Router, Split, TrainedRouter};
// the built-in labelers `labels = "TYPE"` names are registered wherever these routers are linked
use rgd_labelers as _;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum NeuralError {
    /// Training is impossible.
    #[error("cannot train: {0}")]
    Train(String),
    /// candle failed.
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
}

rgd_core::component_error!(NeuralError, "neural router");

/// Training settings shared by `mlp` and `mf`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// The labels it learns: a `[labelers.NAME]` or a labeler type (`key`: correct against the
    /// key; `consensus`, `plurality`, `dawid_skene`: no key; soft labels stay soft).
    pub labels: String,
    /// Hidden units (`mlp`) or rank (`mf`); 0: 64 for `mlp`, 16 for `mf`.
    pub width: usize,
    /// Passes over the training data.
    pub epochs: usize,
    /// Minibatch size.
    pub batch: usize,
    /// Learning rate.
    pub lr: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Share of the training questions held out for early stopping (the epoch with the
    /// lowest held-out loss is kept; none under 20 questions).
    pub validation: f64,
    /// Seed (initialization, hold-out and minibatch order).
    pub seed: u64,
}

/// Largest `width` (hidden units or rank): beyond it the weights outgrow any sensible model.
pub const MAX_WIDTH: usize = 16_384;
/// Most `epochs`.
pub const MAX_EPOCHS: usize = 100_000;

impl TrainConfig {
    /// Check the settings: a finite positive `lr`, a finite non-negative `weight_decay`,
    /// `validation` in 0..1, at least one epoch and one question per batch, sizes under the
    /// ceilings above.
    pub fn check(&self) -> rgd_core::Result<()> {
        let bad = |msg: String| Err(rgd_core::Error::Data(msg));
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad(format!("`lr` must be a finite number > 0, got {}", self.lr));
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return bad(format!(
                "`weight_decay` must be a finite number >= 0, got {}",
                self.weight_decay
            ));
        }
        if !(0.0..1.0).contains(&self.validation) {
            return bad(format!(
                "`validation` must be in 0..1 (a share), got {}",
                self.validation
            ));
        }
        if self.epochs == 0 || self.epochs > MAX_EPOCHS {
            return bad(format!(
                "`epochs` must be in 1..={MAX_EPOCHS}, got {}",
                self.epochs
            ));
        }
        if self.batch == 0 {
            return bad("`batch` must be >= 1".into());
        }
        if self.width > MAX_WIDTH {
            return bad(format!(
                "`width` must be at most {MAX_WIDTH}, got {}",
                self.width
            ));
        }
        Ok(())
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            labels: "key".into(),
            width: 0,
            epochs: 40,
            batch: 128,
            lr: 3e-3,
            weight_decay: 1e-3,
            validation: 0.15,
            seed: 0,
        }
    }
}

/// An MLP from the query embedding to each model's label (default `key`: correctness).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct Mlp(pub TrainConfig);

/// Matrix factorization: learned model vectors against a projected query (labels default
/// `key`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct Mf(pub TrainConfig);

/// A trained two-layer network: `logits = W2 act(W1 e + b1) + b2`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainedNet {
    models: Vec<String>,
    /// `mlp` or `mf`.
    pub kind: String,
    relu: bool,
    w1: Array2<f32>,
    b1: Array1<f32>,
    w2: Array2<f32>,
    b2: Array1<f32>,
    /// Training loss per epoch.
    pub loss: Vec<f32>,
}

fn init(rng: &mut ChaCha8Rng, rows: usize, cols: usize) -> Vec<f32> {
    let sd = (2.0 / cols.max(1) as f64).sqrt();
    let n = Normal::new(0.0, sd).expect("sd > 0");
    (0..rows * cols).map(|_| n.sample(rng) as f32).collect()
}

fn to_nd(t: &Tensor) -> Result<Array2<f32>, NeuralError> {
    let (r, c) = t.dims2()?;
    Ok(
        Array2::from_shape_vec((r, c), t.flatten_all()?.to_vec1::<f32>()?)
            .expect("shape from the tensor"),
    )
}

fn train_net(
    cfg: &TrainConfig,
    relu: bool,
    listwise: bool,
    train: &Split,
    models: &[String],
    kind: &str,
    labels: ndarray::Array2<f64>,
) -> Result<TrainedNet, NeuralError> {
    if train.is_empty() {
        return Err(NeuralError::Train(
            "the training split has no question".into(),
        ));
    }
    let dev = Device::Cpu;
    let (n, d) = train.embeddings.dim();
    let m = models.len();
    let h = cfg.width.max(1);
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let w1 = Var::from_tensor(&Tensor::from_vec(init(&mut rng, h, d), (h, d), &dev)?)?;
    let b1 = Var::from_tensor(&Tensor::zeros(h, DType::F32, &dev)?)?;
    let w2 = Var::from_tensor(&Tensor::from_vec(init(&mut rng, m, h), (m, h), &dev)?)?;
    let b2 = Var::from_tensor(&Tensor::zeros(m, DType::F32, &dev)?)?;
    let mut vars = vec![w1.clone(), w2.clone(), b2.clone()];
    if relu {
        vars.push(b1.clone());
    }
    let mut opt = AdamW::new(
        vars,
        ParamsAdamW {
            lr: cfg.lr,
            weight_decay: cfg.weight_decay,
            ..Default::default()
        },
    )?;
    let x_all: Vec<f32> = train.embeddings.iter().copied().collect();
    let mut y_all: Vec<f32> = labels.iter().map(|&v| v as f32).collect();
    let mut order: Vec<usize> = (0..n).collect();
    if listwise {
        // targets: the right models share the mass; questions nobody gets right carry no
        // ranking signal
        for row in y_all.chunks_mut(m) {
            let s: f32 = row.iter().sum();
            if s > 0.0 {
                row.iter_mut().for_each(|v| *v /= s);
            }
        }
        order.retain(|&i| y_all[i * m..(i + 1) * m].iter().any(|v| *v > 0.0));
        if order.is_empty() {
            return Err(NeuralError::Train(
                "no training question is answered right by any model".into(),
            ));
        }
    }
    // early stopping: a seeded share of the training questions is held out; the weights of
    // the epoch with the lowest held-out loss are kept
    order.shuffle(&mut rng);
    let n_val = if order.len() >= 20 {
        ((order.len() as f64) * cfg.validation).round() as usize
    } else {
        0
    };
    let val: Vec<usize> = order.split_off(order.len() - n_val);
    let n_used = order.len().max(1);
    let batch = |idx: &[usize]| -> Result<(Tensor, Tensor), NeuralError> {
        let xb: Vec<f32> = idx
            .iter()
            .flat_map(|&i| x_all[i * d..(i + 1) * d].iter().copied())
            .collect();
        let yb: Vec<f32> = idx
            .iter()
            .flat_map(|&i| y_all[i * m..(i + 1) * m].iter().copied())
            .collect();
        Ok((
            Tensor::from_vec(xb, (idx.len(), d), &dev)?,
            Tensor::from_vec(yb, (idx.len(), m), &dev)?,
        ))
    };
    let loss_of = |x: &Tensor, y: &Tensor| -> Result<Tensor, NeuralError> {
        let mut hdn = x.matmul(&w1.t()?)?;
        if relu {
            hdn = hdn.broadcast_add(&b1)?.relu()?;
        }
        let logits = hdn.matmul(&w2.t()?)?.broadcast_add(&b2)?;
        Ok(if listwise {
            // cross-entropy of the target distribution under softmax(logits)
            let logp = candle_nn::ops::log_softmax(&logits, 1)?;
            (y * logp)?.sum(1)?.mean(0)?.neg()?
        } else {
            candle_nn::loss::binary_cross_entropy_with_logit(&logits, y)?
        })
    };
    let snapshot = || -> Result<[Tensor; 4], NeuralError> {
        Ok([
            w1.as_tensor().copy()?,
            b1.as_tensor().copy()?,
            w2.as_tensor().copy()?,
            b2.as_tensor().copy()?,
        ])
    };
    let mut best: Option<(f32, [Tensor; 4])> = None;
    let mut losses = Vec::with_capacity(cfg.epochs);
    for _ in 0..cfg.epochs.max(1) {
        order.shuffle(&mut rng);
        let mut total = 0.0f32;
        for chunk in order.chunks(cfg.batch.max(1)) {
            let (x, y) = batch(chunk)?;
            let loss = loss_of(&x, &y)?;
            opt.backward_step(&loss)?;
            total += loss.to_scalar::<f32>()? * chunk.len() as f32;
        }
        losses.push(total / n_used as f32);
        if !val.is_empty() {
            let (x, y) = batch(&val)?;
            let v = loss_of(&x, &y)?.to_scalar::<f32>()?;
            if best.as_ref().is_none_or(|(b, _)| v < *b) {
                best = Some((v, snapshot()?));
            }
        }
    }
    let [w1t, b1t, w2t, b2t] = match best {
        Some((_, s)) => s,
        None => snapshot()?,
    };
    let net = TrainedNet {
        models: models.to_vec(),
        kind: kind.into(),
        relu,
        w1: to_nd(&w1t)?,
        b1: Array1::from(b1t.to_vec1::<f32>()?),
        w2: to_nd(&w2t)?,
        b2: Array1::from(b2t.to_vec1::<f32>()?),
        loss: losses,
    };
    // a step too large for the data overflows the weights: say so instead of routing on NaN
    let finite = net.w1.iter().all(|x| x.is_finite())
        && net.b1.iter().all(|x| x.is_finite())
        && net.w2.iter().all(|x| x.is_finite())
        && net.b2.iter().all(|x| x.is_finite());
    if !finite {
        return Err(NeuralError::Train(format!(
            "training diverged (the weights are no longer finite numbers); lower `lr` (now {})",
            cfg.lr
        )));
    }
    Ok(net)
}

impl TrainedNet {
    fn logits(&self, e: ndarray::ArrayView1<'_, f32>) -> Array1<f32> {
        let mut h = self.w1.dot(&e);
        if self.relu {
            h += &self.b1;
            h.mapv_inplace(|v| v.max(0.0));
        }
        self.w2.dot(&h) + &self.b2
    }
}

#[typetag::serde(name = "neural")]
impl TrainedRouter for TrainedNet {
    fn models(&self) -> &[String] {
        &self.models
    }
    fn validate(&self) -> rgd_core::Result<()> {
        use rgd_core::artifact;
        artifact::models(&self.models)?;
        if !["mlp", "mf", "ranker"].contains(&self.kind.as_str()) {
            return Err(rgd_core::Error::Data(format!(
                "artifact field `kind`: `{}` is not mlp, mf or ranker",
                self.kind
            )));
        }
        let (h, d) = self.w1.dim();
        if h == 0 || d == 0 {
            return Err(rgd_core::Error::Data("artifact field `w1`: empty".into()));
        }
        if self.relu {
            artifact::len("b1", self.b1.len(), h, "the rows of w1")?;
        }
        artifact::len(
            "w2 (rows)",
            self.w2.nrows(),
            self.models.len(),
            "one per model",
        )?;
        artifact::len("w2 (columns)", self.w2.ncols(), h, "the rows of w1")?;
        artifact::len("b2", self.b2.len(), self.models.len(), "one per model")?;
        artifact::finite("w1", &self.w1)?;
        artifact::finite("b1", &self.b1)?;
        artifact::finite("w2", &self.w2)?;
        artifact::finite("b2", &self.b2)
    }
    fn score(&self, query: &Query<'_>, out: &mut [f64]) -> rgd_core::Result<()> {
        rgd_core::check_dim(query, self.w1.ncols())?;
        if self.kind == "ranker" {
            // the softmax over models: the predicted share of being a right model
            let l = self.logits(query.embedding);
            let mx = l.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let z: f64 = l.iter().map(|v| ((v - mx) as f64).exp()).sum();
            for (o, v) in out.iter_mut().zip(l.iter()) {
                *o = ((v - mx) as f64).exp() / z;
            }
            return Ok(());
        }
        for (o, l) in out.iter_mut().zip(self.logits(query.embedding)) {
            // the predicted probability that the model answers correctly
            *o = 1.0 / (1.0 + (-(l as f64)).exp());
        }
        Ok(())
    }
    fn explain(&self, query: &Query<'_>) -> Option<String> {
        let mut s = vec![0.0; self.models.len()];
        self.score(query, &mut s).ok()?;
        Some(format!(
            "{}: predicted probability of a right answer: {}",
            self.kind,
            self.models
                .iter()
                .zip(&s)
                .map(|(m, p)| format!("{m} {p:.2}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

/// A listwise ranker over the pool (LLMRank-style; ListNet loss on its labels, default `key`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct Ranker(pub TrainConfig);

/// Train one of the three with its default width (when `width = 0`), on its labeler's labels.
#[allow(clippy::too_many_arguments)]
fn train_kind(
    cfg: &TrainConfig,
    kind: &str,
    default_width: usize,
    relu: bool,
    listwise: bool,
    train: &Split,
    models: &[String],
    ctx: &Context,
) -> rgd_core::Result<Box<dyn TrainedRouter>> {
    let labels = ctx.labels(&cfg.labels, train)?.values;
    let cfg = TrainConfig {
        width: if cfg.width == 0 {
            default_width
        } else {
            cfg.width
        },
        ..cfg.clone()
    };
    Ok(Box::new(train_net(
        &cfg, relu, listwise, train, models, kind, labels,
    )?))
}

/// The three differ in their default width, activation and loss.
macro_rules! neural_router {
    ($router:ty, $kind:literal, $width:expr, $relu:expr, $listwise:expr) => {
        impl Router for $router {
            fn check(&self) -> rgd_core::Result<()> {
                self.0.check()
            }
            fn labels(&self) -> Option<&str> {
                Some(&self.0.labels)
            }
            fn train(
                &self,
                t: &Split,
                m: &[String],
                ctx: &Context,
            ) -> rgd_core::Result<Box<dyn TrainedRouter>> {
                train_kind(&self.0, $kind, $width, $relu, $listwise, t, m, ctx)
            }
        }
    };
}

neural_router!(Mlp, "mlp", 64, true, false);
neural_router!(Mf, "mf", 16, false, false);
neural_router!(Ranker, "ranker", 64, true, true);

rgd_core::register!(router, "ranker", Ranker);
rgd_core::register!(router, "mlp", Mlp);
rgd_core::register!(router, "mf", Mf);

#[cfg(test)]
mod tests {
    use super::*;
    use rgd_core::{Letter, Question, Responses};

    /// Model 0 is right when the first coordinate is positive, model 1 otherwise.
    fn world(n: usize, seed: u64) -> Split {
        use rand::Rng;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut emb = Array2::zeros((n, 4));
        let mut choice = Array2::from_elem((n, 2), None);
        for i in 0..n {
            for k in 0..4 {
                emb[[i, k]] = rng.random_range(-1.0f32..1.0);
            }
            let a = emb[[i, 0]] > 0.0;
            choice[[i, 0]] = Letter::from_index(if a { 0 } else { 1 });
            choice[[i, 1]] = Letter::from_index(if a { 2 } else { 0 });
        }
        Split {
            name: "t".into(),
            questions: (0..n)
                .map(|i| Question {
                    id: i.to_string(),
                    subject: "s".into(),
                    text: String::new(),
                    options: vec!["x".into(); 4],
                    answer: Letter::from_index(0),
                    source: None,
                })
                .collect(),
            responses: Responses {
                choice,
                confidence: Array2::from_elem((n, 2), -1.0),
                latency: None,
                correct: None,
                cost: None,
            },
            embeddings: emb,
            generator_answer: None,
            call_failures: Default::default(),
        }
    }

    #[test]
    fn mlp_and_mf_learn_who_is_right_where_deterministically() {
        let train = world(600, 1);
        let test = world(200, 2);
        let models = vec!["a".to_string(), "b".to_string()];
        let ctx = Context::new(".");
        for router in [
            Box::new(Mlp::default()) as Box<dyn Router>,
            Box::new(Mf::default()),
            Box::new(Ranker::default()),
        ] {
            let t = router.train(&train, &models, &ctx).unwrap();
            let s = t.score_split(&test).unwrap();
            let right = (0..test.len())
                .filter(|&i| {
                    let want = if test.embeddings[[i, 0]] > 0.0 { 0 } else { 1 };
                    rgd_core::rank(&s.row(i).to_vec())[0] == want
                })
                .count();
            assert!(right as f64 / test.len() as f64 > 0.9, "{right}");
            let again = router
                .train(&train, &models, &ctx)
                .unwrap()
                .score_split(&test)
                .unwrap();
            assert_eq!(s, again, "deterministic for a seed");
        }
        // no key: a clear failure
        let mut nokey = train.clone();
        nokey.questions.iter_mut().for_each(|q| q.answer = None);
        let e = Mlp::default()
            .train(&nokey, &models, &ctx)
            .unwrap_err()
            .to_string();
        assert!(e.contains("answer key"), "{e}");
    }
}
