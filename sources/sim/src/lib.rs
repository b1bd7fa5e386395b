//! A simulated routing world, deterministic for a seed.
//!
//! Each subject has hidden skill niches: unit directions around the subject's own direction in
//! embedding space. Each pool model has a hidden probability of answering correctly per
//! (subject, niche) and a confidence (mean log-probability) that is higher when it is right.
//! A question sits near its niche's direction. The simulated generator writes the training
//! questions; its answer key is right with probability `key_accuracy`, and a share
//! `easy_share` of them is answered correctly by every model (they separate nothing). The test
//! questions come from the same world with gold answers.

use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal, StandardNormal};
use rgd_core::{Context, DataSource, Dataset, Letter, Question, Responses, Split};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A parameter is out of range.
    #[error("simulated world: {0}")]
    Invalid(String),
}

rgd_core::component_error!(SimError, "data source simulated");

/// A simulated routing world: subjects with hidden skill niches, a pool with per-niche skills
/// and confidences, and a generator whose answer key is right with a chosen probability.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Simulated {
    /// Task name.
    pub task: String,
    /// Number of subjects.
    pub subjects: usize,
    /// Hidden skill niches per subject.
    pub niches: usize,
    /// Pool size.
    pub models: usize,
    /// Embedding dimension.
    pub dim: usize,
    /// Generated training questions per subject.
    pub train_per_subject: usize,
    /// Real test questions per subject.
    pub test_per_subject: usize,
    /// Options per question (2..=20).
    pub options: usize,
    /// Probability the generator's answer key is right.
    pub key_accuracy: f64,
    /// Share of generated questions every model answers correctly (they separate nothing).
    pub easy_share: f64,
    /// Range of a model's base skill.
    pub base_skill: [f64; 2],
    /// Skill added in a niche the model is strong in.
    pub niche_boost: f64,
    /// Skill removed in a niche the model is weak in.
    pub niche_penalty: f64,
    /// Probability a (model, niche) pair is strong.
    pub p_strong: f64,
    /// Probability a (model, niche) pair is weak.
    pub p_weak: f64,
    /// Probability a wrong answer goes to the question's most attractive distractor.
    pub distractor_pull: f64,
    /// Distance of niche directions from their subject direction.
    pub niche_spread: f64,
    /// Noise of a question's embedding around its niche.
    pub noise: f64,
    /// Confidence gap (mean log-prob) between right and wrong answers.
    pub confidence_gap: f64,
    /// Standard deviation of the confidence.
    pub confidence_sd: f64,
    /// Fixed skills, `skills[model][subject]` (probability of a right answer in every niche
    /// of the subject); empty (default) draws them from the niche structure above.
    pub skills: Vec<Vec<f64>>,
    /// Seconds per question of each model; when given, the responses record a latency around
    /// it (log-normal noise, sd 0.1), so `[costs] from = "latency"` can use it.
    pub seconds_per_question: Vec<f64>,
    /// Probability the generator, re-answering its own question, gets it right (it answers
    /// a wrong letter otherwise); when set, the training split records these answers, which
    /// the `self_answer` filter reads.
    pub generator_skill: Option<f64>,
    /// Seed.
    pub seed: u64,
}

impl Default for Simulated {
    fn default() -> Self {
        Simulated {
            task: "SIM".into(),
            subjects: 8,
            niches: 3,
            models: 6,
            dim: 96,
            train_per_subject: 80,
            test_per_subject: 100,
            options: 4,
            key_accuracy: 0.85,
            easy_share: 0.0,
            base_skill: [0.3, 0.6],
            niche_boost: 0.3,
            niche_penalty: 0.2,
            p_strong: 0.35,
            p_weak: 0.15,
            distractor_pull: 0.5,
            niche_spread: 0.8,
            noise: 0.5,
            confidence_gap: 0.4,
            confidence_sd: 0.25,
            skills: Vec::new(),
            seconds_per_question: Vec::new(),
            generator_skill: None,
            seed: 1,
        }
    }
}

/// The hidden truth of a world (written as `world.json` by `rgd simulate`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorldTruth {
    /// Model names.
    pub models: Vec<String>,
    /// The seed.
    pub seed: u64,
    /// `skill[model][subject][niche]`: probability of a right answer.
    pub skill: Vec<Vec<Vec<f64>>>,
}

fn unit(rng: &mut impl Rng, dim: usize) -> Vec<f32> {
    let v: Vec<f32> = (0..dim)
        .map(|_| rng.sample::<f32, _>(StandardNormal))
        .collect();
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-9);
    v.into_iter().map(|x| x / n).collect()
}

fn around(rng: &mut impl Rng, center: &[f32], spread: f64) -> Vec<f32> {
    let g = unit(rng, center.len());
    let v: Vec<f32> = center
        .iter()
        .zip(g)
        .map(|(c, g)| c + spread as f32 * g)
        .collect();
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-9);
    v.into_iter().map(|x| x / n).collect()
}

struct World {
    niche_dirs: Vec<Vec<Vec<f32>>>,
    skill: Vec<Vec<Vec<f64>>>,
    conf_mean: Vec<f64>,
}

/// Most subjects of a simulated world.
pub const MAX_SUBJECTS: usize = 10_000;
/// Most niches per subject.
pub const MAX_NICHES: usize = 1_000;
/// Most pool models.
pub const MAX_MODELS: usize = 1_000;
/// Largest embedding dimension (the largest embedders in use have 4,096).
pub const MAX_DIM: usize = 16_384;
/// Most values (embedding entries and responses) in one split: 4 GB of f32 embeddings, so a
/// 1M-question, 384-d world fits and a typo does not abort on allocation.
pub const MAX_VALUES: u64 = 1_000_000_000;

impl Simulated {
    fn check(&self) -> Result<(), SimError> {
        let bad = |m: String| Err(SimError::Invalid(m));
        if self.subjects == 0 || self.niches == 0 || self.models == 0 || self.dim == 0 {
            return bad("subjects, niches, models and dim must be >= 1".into());
        }
        if !(2..=rgd_core::N_LETTERS).contains(&self.options) {
            return bad(format!("options must be in 2..=20, got {}", self.options));
        }
        for (k, v) in [
            ("key_accuracy", self.key_accuracy),
            ("easy_share", self.easy_share),
            ("p_strong", self.p_strong),
            ("p_weak", self.p_weak),
            ("distractor_pull", self.distractor_pull),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return bad(format!("{k} must be in [0, 1], got {v}"));
            }
        }
        if self.p_strong + self.p_weak > 1.0 {
            return bad("p_strong + p_weak must be <= 1".into());
        }
        if !self.skills.is_empty()
            && (self.skills.len() != self.models
                || self.skills.iter().any(|r| r.len() != self.subjects))
        {
            return bad(format!(
                "skills must be {} rows (models) of {} values (subjects)",
                self.models, self.subjects
            ));
        }
        if self
            .skills
            .iter()
            .flatten()
            .any(|p| !(0.0..=1.0).contains(p))
        {
            return bad("every skill must be in [0, 1]".into());
        }
        if !self.seconds_per_question.is_empty()
            && (self.seconds_per_question.len() != self.models
                || self.seconds_per_question.iter().any(|s| !(*s > 0.0)))
        {
            return bad(format!(
                "seconds_per_question must be {} positive numbers (one per model)",
                self.models
            ));
        }
        if let Some(g) = self.generator_skill
            && !(0.0..=1.0).contains(&g)
        {
            return bad(format!("generator_skill must be in [0, 1], got {g}"));
        }
        if !(self.confidence_sd >= 0.0 && self.confidence_sd.is_finite()) {
            return bad("confidence_sd must be a finite number >= 0".into());
        }
        let [lo, hi] = self.base_skill;
        if !(0.0 <= lo && lo <= hi && hi <= 1.0) {
            return bad(format!(
                "base_skill must be a range [low, high] with 0 <= low <= high <= 1, got [{lo}, {hi}]"
            ));
        }
        for (k, v) in [
            ("niche_boost", self.niche_boost),
            ("niche_penalty", self.niche_penalty),
            ("niche_spread", self.niche_spread),
            ("noise", self.noise),
            ("confidence_gap", self.confidence_gap),
        ] {
            if !(v >= 0.0 && v.is_finite()) {
                return bad(format!("{k} must be a finite number >= 0, got {v}"));
            }
        }
        // ceilings: a typo such as dim = 1e9 must be an error, not an allocation abort
        for (k, v, max) in [
            ("subjects", self.subjects, MAX_SUBJECTS),
            ("niches", self.niches, MAX_NICHES),
            ("models", self.models, MAX_MODELS),
            ("dim", self.dim, MAX_DIM),
        ] {
            if v > max {
                return bad(format!("{k} must be at most {max}, got {v}"));
            }
        }
        let per_subject = self.train_per_subject.max(self.test_per_subject);
        let values = (self.subjects as u128)
            * (per_subject as u128)
            * (self.dim as u128 + self.models as u128);
        if values > MAX_VALUES as u128 {
            return bad(format!(
                "subjects x questions per subject x (dim + models) = {values} values, more than {MAX_VALUES} (about {} GB)",
                MAX_VALUES * 4 / 1_000_000_000
            ));
        }
        // what the world holds (embeddings in f32; a letter, a confidence and a latency per
        // answer; ids and texts), twice for the arrays it is built through
        let questions =
            self.subjects as u64 * (self.train_per_subject as u64 + self.test_per_subject as u64);
        let bytes = questions * (4 * self.dim as u64 + 20 * self.models as u64 + 256) * 2;
        rgd_core::memory::check(
            &format!(
                "a world of {} subjects x {} questions (train + test) x {} dimensions and {} models",
                self.subjects,
                self.train_per_subject + self.test_per_subject,
                self.dim,
                self.models
            ),
            bytes,
        )
        .map_err(|e| SimError::Invalid(e.to_string()))?;
        Ok(())
    }

    /// The model names: `M0`, `M1`, ...
    pub fn model_names(&self) -> Vec<String> {
        (0..self.models).map(|m| format!("M{m}")).collect()
    }

    fn world(&self, rng: &mut ChaCha8Rng) -> World {
        let niche_dirs = (0..self.subjects)
            .map(|_| {
                let s = unit(rng, self.dim);
                (0..self.niches)
                    .map(|_| around(rng, &s, self.niche_spread))
                    .collect()
            })
            .collect();
        let mut skill: Vec<Vec<Vec<f64>>> = (0..self.models)
            .map(|_| {
                let base = rng.random_range(self.base_skill[0]..=self.base_skill[1]);
                (0..self.subjects)
                    .map(|_| {
                        (0..self.niches)
                            .map(|_| {
                                let u: f64 = rng.random();
                                let s = if u < self.p_strong {
                                    base + self.niche_boost
                                } else if u < self.p_strong + self.p_weak {
                                    base - self.niche_penalty
                                } else {
                                    base
                                };
                                s.clamp(0.02, 0.98)
                            })
                            .collect()
                    })
                    .collect()
            })
            .collect();
        for (j, row) in self.skills.iter().enumerate() {
            for (s, p) in row.iter().enumerate() {
                skill[j][s] = vec![*p; self.niches];
            }
        }
        let conf_mean = (0..self.models)
            .map(|_| rng.random_range(-1.0..-0.4))
            .collect();
        World {
            niche_dirs,
            skill,
            conf_mean,
        }
    }

    /// The hidden truth of this world.
    pub fn truth(&self) -> WorldTruth {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        WorldTruth {
            models: self.model_names(),
            seed: self.seed,
            skill: self.world(&mut rng).skill,
        }
    }

    fn split(
        &self,
        world: &World,
        name: &str,
        per_subject: usize,
        id0: usize,
        generated: bool,
        rng: &mut ChaCha8Rng,
    ) -> (Split, Vec<Letter>) {
        let n = per_subject * self.subjects;
        let m = self.models;
        let mut questions = Vec::with_capacity(n);
        let mut choice = Array2::from_elem((n, m), None);
        let mut confidence = Array2::zeros((n, m));
        let mut embeddings = Array2::zeros((n, self.dim));
        let noise = Normal::new(0.0, self.noise / (self.dim as f64).sqrt()).expect("sd >= 0");
        let conf_noise = Normal::new(0.0, self.confidence_sd).expect("sd >= 0");
        let wrong = |rng: &mut ChaCha8Rng, gold: usize| {
            let w = rng.random_range(0..self.options - 1);
            if w >= gold { w + 1 } else { w }
        };
        let mut latency: Option<Array2<f64>> =
            (!self.seconds_per_question.is_empty()).then(|| Array2::zeros((n, m)));
        let lat_noise = Normal::<f64>::new(0.0, 0.1).expect("sd >= 0");
        let mut golds = Vec::with_capacity(n);
        let mut q = 0;
        for s in 0..self.subjects {
            for _ in 0..per_subject {
                let niche = rng.random_range(0..self.niches);
                let dir = &world.niche_dirs[s][niche];
                let mut norm = 0f32;
                for (k, d) in dir.iter().enumerate() {
                    let v = d + noise.sample(rng) as f32;
                    embeddings[[q, k]] = v;
                    norm += v * v;
                }
                let norm = norm.sqrt().max(1e-9);
                embeddings.row_mut(q).mapv_inplace(|v| v / norm);
                let gold = rng.random_range(0..self.options);
                golds.push(Letter::from_index(gold).expect("gold < options <= 20"));
                let distractor = wrong(rng, gold);
                let easy = generated && rng.random::<f64>() < self.easy_share;
                for j in 0..m {
                    let right = easy || rng.random::<f64>() < world.skill[j][s][niche];
                    let c = if right {
                        gold
                    } else if rng.random::<f64>() < self.distractor_pull {
                        distractor
                    } else {
                        wrong(rng, gold)
                    };
                    choice[[q, j]] = Letter::from_index(c);
                    let mu = world.conf_mean[j] - if right { 0.0 } else { self.confidence_gap };
                    confidence[[q, j]] = (mu + conf_noise.sample(rng)).min(-1e-3);
                    if let Some(lat) = latency.as_mut() {
                        lat[[q, j]] = self.seconds_per_question[j] * lat_noise.sample(rng).exp();
                    }
                }
                let key = if generated && rng.random::<f64>() >= self.key_accuracy {
                    wrong(rng, gold)
                } else {
                    gold
                };
                let id = id0 + q;
                questions.push(Question {
                    id: id.to_string(),
                    subject: format!("subject_{s}"),
                    text: format!("synthetic question {id} (subject {s}, niche {niche})"),
                    options: (0..self.options)
                        .map(|o| format!("option {}", (b'A' + o as u8) as char))
                        .collect(),
                    answer: Letter::from_index(key),
                    source: Some(if generated {
                        format!("simulated generator (key accuracy {})", self.key_accuracy)
                    } else {
                        "simulated benchmark".into()
                    }),
                });
                q += 1;
            }
        }
        let split = Split {
            name: name.into(),
            questions,
            responses: Responses {
                choice,
                confidence,
                latency,
                correct: None,
                cost: None,
            },
            embeddings,
            generator_answer: None,
            call_failures: Default::default(),
        };
        (split, golds)
    }

    /// Generate the dataset.
    pub fn generate(&self) -> Result<Dataset, SimError> {
        Ok(self.generate_with_truth()?.0)
    }

    /// Generate the dataset and the true answers of the generated training questions (which
    /// the generator's key matches with probability `key_accuracy`).
    pub fn generate_with_truth(&self) -> Result<(Dataset, Vec<Letter>), SimError> {
        self.check()?;
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let world = self.world(&mut rng);
        let mut train_rng = ChaCha8Rng::seed_from_u64(self.seed ^ 0x7472_6169_6e00);
        let mut test_rng = ChaCha8Rng::seed_from_u64(self.seed ^ 0x7465_7374_0000);
        let (mut train, gold) = self.split(
            &world,
            "train",
            self.train_per_subject,
            0,
            true,
            &mut train_rng,
        );
        if let Some(skill) = self.generator_skill {
            let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ 0x6765_6e65_7261_746f);
            train.generator_answer = Some(
                gold.iter()
                    .map(|g| {
                        let right = rng.random::<f64>() < skill;
                        let a = if right {
                            g.index()
                        } else {
                            let w = rng.random_range(0..self.options - 1);
                            if w >= g.index() { w + 1 } else { w }
                        };
                        Letter::from_index(a)
                    })
                    .collect(),
            );
        }
        let (test, _) = self.split(
            &world,
            "test",
            self.test_per_subject,
            100_000,
            false,
            &mut test_rng,
        );
        Ok((
            Dataset {
                task: self.task.clone(),
                models: self.model_names(),
                train,
                test,
            },
            gold,
        ))
    }
}

impl DataSource for Simulated {
    fn load(&self, _ctx: &Context) -> rgd_core::Result<Dataset> {
        Ok(self.generate()?)
    }
}

rgd_core::register!(data_source, "simulated", Simulated);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_for_a_seed_and_keys_as_asked() {
        let sim = Simulated {
            key_accuracy: 0.6,
            train_per_subject: 500,
            ..Default::default()
        };
        let (a, gold) = sim.generate_with_truth().unwrap();
        assert_eq!(a, sim.generate().unwrap());
        let other = Simulated {
            seed: 2,
            ..sim.clone()
        }
        .generate()
        .unwrap();
        assert_ne!(a.train.responses, other.train.responses);
        assert_eq!(a.train.len(), 8 * 500);
        // the generator's key is right about 60% of the time on training data
        let right = a
            .train
            .questions
            .iter()
            .zip(&gold)
            .filter(|(q, g)| q.answer == Some(**g))
            .count();
        let share = right as f64 / gold.len() as f64;
        assert!((share - 0.6).abs() < 0.03, "key accuracy {share}");
        a.validate().unwrap();
    }

    #[test]
    fn easy_questions_get_unanimous_right_answers() {
        let sim = Simulated {
            easy_share: 1.0,
            key_accuracy: 1.0,
            ..Default::default()
        };
        let d = sim.generate().unwrap();
        for q in 0..d.train.len() {
            let key = d.train.questions[q].answer;
            for j in 0..d.models.len() {
                assert!(d.train.responses.is_correct(q, j, key));
            }
        }
    }
}
