//! A synthetic wide response matrix written as Parquet, for `rgd bench matrix`: how fast a
//! large file of the kind researchers bring loads.

use arrow_array::builder::{Float32Builder, ListBuilder, StringBuilder};
use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray};
use rand::{Rng, SeedableRng};
use std::path::Path;
use std::sync::Arc;

use crate::FileError;

/// Write `n` questions (10 subjects) answered by `models` models as a wide Parquet file:
/// `id`, `subject`, `question`, `options` (4), `answer` (a letter), a `dim`-d `embedding`, and
/// per model `{model}|choice` (a letter) and `{model}|confidence`. Models are `m0`, `m1`, ...;
/// model `m` is right with probability 0.4 + 0.5 m / models.
pub fn write_wide_parquet(
    path: &Path,
    n: usize,
    models: usize,
    dim: usize,
    seed: u64,
) -> Result<(), FileError> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let letters = ["A", "B", "C", "D"];
    let answers: Vec<usize> = (0..n).map(|_| rng.random_range(0..4)).collect();
    let mut cols: Vec<(String, ArrayRef)> = vec![
        (
            "id".into(),
            Arc::new(StringArray::from_iter_values(
                (0..n).map(|i| format!("q{i}")),
            )),
        ),
        (
            "subject".into(),
            Arc::new(StringArray::from_iter_values(
                (0..n).map(|i| format!("subject-{}", i % 10)),
            )),
        ),
        (
            "question".into(),
            Arc::new(StringArray::from_iter_values((0..n).map(|i| {
                format!("Synthetic question number {i}: which option is right?")
            }))),
        ),
    ];
    let mut options = ListBuilder::new(StringBuilder::new());
    for _ in 0..n {
        for l in letters {
            options.values().append_value(format!("option {l}"));
        }
        options.append(true);
    }
    cols.push(("options".into(), Arc::new(options.finish())));
    cols.push((
        "answer".into(),
        Arc::new(StringArray::from_iter_values(
            answers.iter().map(|&a| letters[a]),
        )),
    ));
    let mut emb = ListBuilder::new(Float32Builder::with_capacity(n * dim));
    for i in 0..n {
        for d in 0..dim {
            let centre = if d == i % 10 { 1.0 } else { 0.0 };
            emb.values()
                .append_value(centre + 0.1 * rng.random::<f32>());
        }
        emb.append(true);
    }
    cols.push(("embedding".into(), Arc::new(emb.finish())));
    for m in 0..models {
        let p = 0.4 + 0.5 * m as f64 / models as f64;
        let mut choice = Vec::with_capacity(n);
        let mut conf = Vec::with_capacity(n);
        for &a in &answers {
            let right = rng.random_bool(p);
            let c = if right {
                a
            } else {
                (a + rng.random_range(1..4)) % 4
            };
            choice.push(letters[c]);
            conf.push(if right { -0.2 } else { -1.2 } + 0.1 * rng.random::<f64>());
        }
        cols.push((
            format!("m{m}|choice"),
            Arc::new(StringArray::from_iter_values(choice)),
        ));
        cols.push((
            format!("m{m}|confidence"),
            Arc::new(Float64Array::from(conf)),
        ));
    }
    let batch =
        RecordBatch::try_from_iter(cols).map_err(|e| FileError::invalid(path, e.to_string()))?;
    let f = std::fs::File::create(path).map_err(|e| FileError::io(path, e))?;
    let mut w = parquet::arrow::ArrowWriter::try_new(f, batch.schema(), None)
        .map_err(|e| FileError::invalid(path, e.to_string()))?;
    w.write(&batch)
        .map_err(|e| FileError::invalid(path, e.to_string()))?;
    w.close()
        .map_err(|e| FileError::invalid(path, e.to_string()))?;
    Ok(())
}
