//! A dataset written as rgd's wide layout in Parquet (`rgd export --format parquet`): one file
//! per split that `[data] type = "responses"` reads back as it is (`layout = "wide"`,
//! `choice = "{model}|choice"`, `confidence = "{model}|confidence"`, the `embedding` column):
//! `id`, `subject`, `question`, `options`, `answer`, `source`, a float32 `embedding` when the
//! split has one, and per model `{model}|choice` (a letter; null = an abstention) and
//! `{model}|confidence` (null = unknown), or `{model}|correct` for correctness-only data.
//! Compressed with zstd.

use arrow_array::builder::{Float32Builder, ListBuilder, StringBuilder};
use arrow_array::{ArrayRef, BooleanArray, Float64Array, RecordBatch, StringArray};
use rgd_core::Split;
use std::path::Path;
use std::sync::Arc;

use crate::FileError;

/// Write `split` (answered by `models`) to `path` in the wide layout.
pub fn write_wide_parquet(split: &Split, models: &[String], path: &Path) -> Result<(), FileError> {
    let bad = |e: &dyn std::fmt::Display| FileError::invalid(path, e.to_string());
    let qs = &split.questions;
    let strings = |f: &dyn Fn(usize) -> Option<String>| -> ArrayRef {
        Arc::new((0..qs.len()).map(f).collect::<StringArray>())
    };
    let mut cols: Vec<(String, ArrayRef)> = vec![
        ("id".into(), strings(&|i| Some(qs[i].id.clone()))),
        ("subject".into(), strings(&|i| Some(qs[i].subject.clone()))),
        ("question".into(), strings(&|i| Some(qs[i].text.clone()))),
    ];
    let mut options = ListBuilder::new(StringBuilder::new());
    for q in qs {
        for o in &q.options {
            options.values().append_value(o);
        }
        options.append(true);
    }
    cols.push(("options".into(), Arc::new(options.finish())));
    cols.push((
        "answer".into(),
        strings(&|i| qs[i].answer.map(|a| a.to_string())),
    ));
    cols.push(("source".into(), strings(&|i| qs[i].source.clone())));
    if split.embeddings.ncols() > 0 {
        let dim = split.embeddings.ncols();
        let mut emb = ListBuilder::new(Float32Builder::with_capacity(qs.len() * dim));
        for row in split.embeddings.rows() {
            emb.values()
                .append_slice(row.as_slice().unwrap_or(&row.to_vec()));
            emb.append(true);
        }
        cols.push(("embedding".into(), Arc::new(emb.finish())));
    }
    let r = &split.responses;
    for (m, name) in models.iter().enumerate() {
        if let Some(c) = &r.correct {
            cols.push((
                format!("{name}|correct"),
                Arc::new(BooleanArray::from(c.column(m).to_vec())),
            ));
            continue;
        }
        cols.push((
            format!("{name}|choice"),
            strings(&|i| r.choice[[i, m]].map(|l| l.to_string())),
        ));
        cols.push((
            format!("{name}|confidence"),
            Arc::new(
                r.confidence
                    .column(m)
                    .iter()
                    .map(|&c| c.is_finite().then_some(c))
                    .collect::<Float64Array>(),
            ),
        ));
    }
    let batch = RecordBatch::try_from_iter(cols).map_err(|e| bad(&e))?;
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
        .build();
    let f = std::fs::File::create(path).map_err(|e| FileError::io(path, e))?;
    let mut w = parquet::arrow::ArrowWriter::try_new(f, batch.schema(), Some(props))
        .map_err(|e| bad(&e))?;
    w.write(&batch).map_err(|e| bad(&e))?;
    w.close().map_err(|e| bad(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rgd_core::{Context, DataSource};

    #[test]
    fn a_written_dataset_reads_back_through_the_responses_source() {
        let ds = rgd_testkit::World::new().seed(5).dataset();
        let t = tempfile::tempdir().unwrap();
        write_wide_parquet(&ds.train, &ds.models, &t.path().join("train.parquet")).unwrap();
        write_wide_parquet(&ds.test, &ds.models, &t.path().join("test.parquet")).unwrap();
        let src: crate::responses::ResponseMatrix = toml::from_str(
            "layout = \"wide\"\ntrain = \"train.parquet\"\ntest = \"test.parquet\"\nchoice = \"{model}|choice\"\nconfidence = \"{model}|confidence\"",
        )
        .unwrap();
        let back = src.load(&Context::new(t.path())).unwrap();
        assert_eq!(back.models, ds.models);
        for (a, b) in [(&ds.train, &back.train), (&ds.test, &back.test)] {
            assert_eq!(a.questions.len(), b.questions.len());
            for (x, y) in a.questions.iter().zip(&b.questions) {
                assert_eq!(
                    (&x.id, &x.subject, &x.text, &x.options, x.answer),
                    (&y.id, &y.subject, &y.text, &y.options, y.answer)
                );
            }
            assert_eq!(a.responses.choice, b.responses.choice);
            assert_eq!(a.responses.confidence, b.responses.confidence);
            assert_eq!(a.embeddings, b.embeddings);
        }
    }
}
