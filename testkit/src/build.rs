//! Few-line builders for splits and datasets.

use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rgd_core::{Dataset, Letter, Question, Responses, Split};
use std::collections::BTreeMap;

/// A seeded world with skill structure: `subjects` subjects whose questions cluster in
/// embedding space, `models` models each strong on some subjects (right with probability
/// `strong`, else `weak`), and a key that is always right. Small by default (2 subjects, 3
/// models, 24 training and 12 test questions per subject, 8-d embeddings), so a router trains
/// in milliseconds even in a debug build.
#[derive(Clone, Debug)]
pub struct World {
    models: usize,
    subjects: usize,
    train_per_subject: usize,
    test_per_subject: usize,
    dim: usize,
    options: usize,
    strong: f64,
    weak: f64,
    seed: u64,
}

impl Default for World {
    fn default() -> Self {
        World {
            models: 3,
            subjects: 2,
            train_per_subject: 24,
            test_per_subject: 12,
            dim: 8,
            options: 4,
            strong: 0.9,
            weak: 0.3,
            seed: 0,
        }
    }
}

impl World {
    /// The default small world.
    pub fn new() -> World {
        World::default()
    }
    /// Pool size (at least 1).
    pub fn models(mut self, n: usize) -> World {
        self.models = n.max(1);
        self
    }
    /// Subjects (at least 1).
    pub fn subjects(mut self, n: usize) -> World {
        self.subjects = n.max(1);
        self
    }
    /// Training and test questions per subject.
    pub fn per_subject(mut self, train: usize, test: usize) -> World {
        self.train_per_subject = train;
        self.test_per_subject = test;
        self
    }
    /// Embedding dimension (at least 1).
    pub fn dim(mut self, d: usize) -> World {
        self.dim = d.max(1);
        self
    }
    /// Accuracy of a model on its strong and on its other subjects.
    pub fn accuracy(mut self, strong: f64, weak: f64) -> World {
        self.strong = strong;
        self.weak = weak;
        self
    }
    /// The seed; the same seed gives the same world.
    pub fn seed(mut self, seed: u64) -> World {
        self.seed = seed;
        self
    }
    /// The pool's model names: `m0`, `m1`, ...
    pub fn model_names(&self) -> Vec<String> {
        (0..self.models).map(|m| format!("m{m}")).collect()
    }

    /// The dataset: a training and a test split of this world.
    pub fn dataset(&self) -> Dataset {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        // a subject's centre in embedding space, and which models are strong on it
        let centres: Vec<Vec<f32>> = (0..self.subjects)
            .map(|_| (0..self.dim).map(|_| rng.random_range(-1.0..1.0)).collect())
            .collect();
        let mut train = self.split("train", self.train_per_subject, &centres, &mut rng);
        // the generator re-answers its own questions, agreeing with its key 9 times in 10
        train.generator_answer = Some(
            train
                .questions
                .iter()
                .map(|q| {
                    let k = q.answer.map_or(0, |a| a.index());
                    let wrong = (k + 1) % self.options.max(1);
                    Letter::from_index(if rng.random_bool(0.9) { k } else { wrong })
                })
                .collect(),
        );
        let test = self.split("test", self.test_per_subject, &centres, &mut rng);
        Dataset {
            task: "testkit".into(),
            models: self.model_names(),
            train,
            test,
        }
    }

    fn split(&self, name: &str, per: usize, centres: &[Vec<f32>], rng: &mut ChaCha8Rng) -> Split {
        let mut b = SplitBuilder::new(name, self.models);
        for (s, centre) in centres.iter().enumerate() {
            for _ in 0..per {
                let key = rng.random_range(0..self.options);
                let choices: Vec<Option<usize>> = (0..self.models)
                    .map(|m| {
                        // model m is strong on subjects m, m + models, ...
                        let p = if s % self.models == m {
                            self.strong
                        } else {
                            self.weak
                        };
                        if rng.random_bool(p.clamp(0.0, 1.0)) {
                            Some(key)
                        } else {
                            // a wrong letter (or, with one option, the key)
                            let wrong = rng.random_range(0..self.options.max(2) - 1);
                            Some(if wrong >= key { wrong + 1 } else { wrong }.min(self.options - 1))
                        }
                    })
                    .collect();
                let emb: Vec<f32> = centre
                    .iter()
                    .map(|c| c + rng.random_range(-0.3..0.3))
                    .collect();
                b = b.question(&format!("subject{s}"), Some(key), &choices, &emb);
            }
        }
        b.build()
    }
}

/// A split written out row by row: `SplitBuilder::new("train", 2).question("math", Some(0),
/// &[Some(0), Some(1)], &[0.1, 0.2]).build()` is one question of subject `math`, key `A`,
/// model 0 answering `A` and model 1 `B`, embedded as `[0.1, 0.2]`. Options are `A`..`D`
/// (more when a letter beyond `D` is used); confidences are the log-probability -0.5.
#[derive(Clone, Debug)]
pub struct SplitBuilder {
    name: String,
    models: usize,
    questions: Vec<Question>,
    choices: Vec<Option<Letter>>,
    confidence: Vec<f64>,
    embeddings: Vec<f32>,
    dim: Option<usize>,
}

impl SplitBuilder {
    /// An empty split named `name` answered by `models` models.
    pub fn new(name: &str, models: usize) -> SplitBuilder {
        SplitBuilder {
            name: name.into(),
            models,
            questions: Vec::new(),
            choices: Vec::new(),
            confidence: Vec::new(),
            embeddings: Vec::new(),
            dim: None,
        }
    }

    /// Add one question: its subject, key (0-based option index), one choice per model
    /// (`None` = abstained) and its embedding. Panics (this is test support) when the number
    /// of choices or the embedding's length disagrees with the earlier rows.
    pub fn question(
        mut self,
        subject: &str,
        key: Option<usize>,
        choices: &[Option<usize>],
        embedding: &[f32],
    ) -> SplitBuilder {
        assert_eq!(choices.len(), self.models, "one choice per model");
        let dim = *self.dim.get_or_insert(embedding.len());
        assert_eq!(embedding.len(), dim, "every embedding has the same length");
        let n_options = choices
            .iter()
            .flatten()
            .chain(key.iter())
            .map(|&c| c + 1)
            .max()
            .unwrap_or(0)
            .max(4);
        let id = format!("{}-{}", self.name, self.questions.len());
        self.questions.push(Question {
            text: format!("Question {} of {subject}?", self.questions.len()),
            id,
            subject: subject.into(),
            options: (0..n_options).map(|i| format!("option {i}")).collect(),
            answer: key.and_then(Letter::from_index),
            source: Some("testkit".into()),
        });
        self.choices
            .extend(choices.iter().map(|c| c.and_then(Letter::from_index)));
        self.confidence
            .extend(std::iter::repeat_n(-0.5, self.models));
        self.embeddings.extend_from_slice(embedding);
        self
    }

    /// The split.
    pub fn build(self) -> Split {
        let n = self.questions.len();
        let dim = self.dim.unwrap_or(0);
        Split {
            name: self.name,
            questions: self.questions,
            responses: Responses::letters(
                Array2::from_shape_vec((n, self.models), self.choices).expect("rows x models"),
                Array2::from_shape_vec((n, self.models), self.confidence).expect("rows x models"),
            ),
            embeddings: Array2::from_shape_vec((n, dim), self.embeddings).expect("rows x dim"),
            generator_answer: None,
            call_failures: BTreeMap::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worlds_are_valid_seeded_and_skill_structured() {
        let ds = World::new().seed(3).dataset();
        ds.validate().unwrap();
        assert_eq!(ds, World::new().seed(3).dataset());
        assert_ne!(ds, World::new().seed(4).dataset());
        // model 0 is strong on subject 0: right far more often there than model 1
        let right = |m: usize| {
            (0..ds.train.len())
                .filter(|&q| ds.train.questions[q].subject == "subject0")
                .filter(|&q| {
                    ds.train
                        .responses
                        .is_correct(q, m, ds.train.questions[q].answer)
                })
                .count()
        };
        assert!(right(0) > right(1) + 6, "{} vs {}", right(0), right(1));
    }

    #[test]
    fn a_split_by_hand() {
        let s = SplitBuilder::new("train", 2)
            .question("math", Some(0), &[Some(0), Some(1)], &[0.1, 0.2])
            .question("bio", None, &[None, Some(5)], &[0.3, 0.4])
            .build();
        s.validate(2).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s.questions[1].options.len(), 6);
        assert_eq!(s.responses.choice[[1, 1]], Letter::from_index(5));
    }
}
