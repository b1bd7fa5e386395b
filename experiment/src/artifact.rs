//! Trained-router artifacts: `DIR/routers/NAME.json` (the trained router, typetag JSON) and
//! `DIR/routers/embedder.toml` (the embedder that turns a query into the vector it routes),
//! written by a run and loaded by `rgd route`, `rgd serve` and front ends.

use crate::error::{Error, Result, ResultExt as _};
use rgd_core::{Embedder, Registry, TrainedRouter};
use std::path::Path;

/// Write `contents` to `path` through a temporary file and a rename, so an interrupted run
/// never leaves a half-written file.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Save a trained router as `dir/NAME.json`.
pub fn save_router(dir: &Path, name: &str, trained: &dyn TrainedRouter) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    write_atomic(
        &dir.join(format!("{name}.json")),
        &serde_json::to_vec(trained)?,
    )
}

/// Save the embedder's table as `dir/embedder.toml`.
pub fn save_embedder(dir: &Path, table: &toml::Table) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    write_atomic(
        &dir.join("embedder.toml"),
        toml::to_string(table)?.as_bytes(),
    )
}

/// Load a trained router artifact, checking that it is whole and ours.
pub fn load_router(artifact: &Path) -> Result<Box<dyn TrainedRouter>> {
    // a device or a FIFO (`/dev/urandom`) would be read without end
    if std::fs::metadata(artifact).is_ok_and(|m| !m.is_file()) {
        return Err(Error::Invalid(format!(
            "{}: not a regular file; give the path of a trained router artifact (routers/NAME.json)",
            artifact.display()
        )));
    }
    let text = std::fs::read_to_string(artifact)
        .with_context(|| format!("reading {}", artifact.display()))?;
    let trained: Box<dyn TrainedRouter> = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a trained router artifact", artifact.display()))?;
    trained
        .validate()
        .with_context(|| format!("{}: a damaged or foreign artifact", artifact.display()))?;
    Ok(trained)
}

/// Load the artifact and its embedder (`embedder.toml` beside it). `precision`, when given,
/// replaces the MiniLM embedder's `precision` (`"f32"` or `"int8"`): a router trained on f32
/// vectors routes queries embedded by the int8 path (`rgd bench embed --routing`'s "test only"
/// columns measure what that changes); any other embedder is refused.
pub fn load_with_embedder(
    registry: &Registry,
    artifact: &Path,
    precision: Option<&str>,
) -> Result<(Box<dyn TrainedRouter>, Box<dyn Embedder>)> {
    let trained = load_router(artifact)?;
    let spec = artifact.with_file_name("embedder.toml");
    let src = std::fs::read_to_string(&spec).with_context(|| {
        format!(
            "{}: no embedder saved next to the artifact (a pipeline with [data] has none); `rgd route` takes --embedding instead",
            spec.display()
        )
    })?;
    let mut t: toml::Table = toml::from_str(&src)
        .map_err(|e| Error::Format(e.to_string()))
        .with_context(|| spec.display().to_string())?;
    if let Some(p) = precision {
        match t.get("type").and_then(|v| v.as_str()) {
            Some("minilm") => {
                t.insert("precision".into(), p.into());
            }
            other => {
                return Err(Error::Invalid(format!(
                    "{}: a precision applies to the `minilm` embedder; this artifact's embedder is {}",
                    spec.display(),
                    other.map_or("of no type".to_string(), |o| format!("`{o}`"))
                )));
            }
        }
    }
    let e = registry.build_embedder(t, &spec.display().to_string())?;
    Ok((trained, e))
}

/// One query ranked by a trained router.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Ranking {
    /// Pool models, best first, with their scores.
    pub ranked: Vec<(String, f64)>,
    /// The router's one-line explanation, when it gives one.
    pub why: Option<String>,
}

/// Rank the pool for one query: `embedding` when given, else the query text embedded with the
/// embedder saved next to the artifact.
pub fn route(
    trained: &dyn TrainedRouter,
    embedder: Option<&dyn Embedder>,
    query: &str,
    embedding: Option<Vec<f32>>,
) -> Result<Ranking> {
    let emb = match (embedding, embedder) {
        (Some(e), _) => e,
        (None, Some(embedder)) => embedder.embed(&[query])?.row(0).to_vec(),
        (None, None) => {
            return Err(Error::Invalid(
                "no embedding given and no embedder to compute one".into(),
            ));
        }
    };
    let q = rgd_core::Query {
        id: "query",
        text: query,
        embedding: ndarray::ArrayView1::from(&emb[..]),
    };
    rgd_core::check_finite(&q)?;
    let mut scores = vec![0.0; trained.models().len()];
    trained.score(&q, &mut scores)?;
    Ok(Ranking {
        ranked: rgd_core::rank(&scores)
            .into_iter()
            .map(|m| (trained.models()[m].clone(), scores[m]))
            .collect(),
        why: trained.explain(&q),
    })
}
