//! Recordings of real runs: every model call of a run written as gzip JSON lines (by
//! `rgd-cache`) with a manifest beside it — the components and their model hashes, one example
//! request (the prompt) per component and operation, the pipeline verbatim, the date and the
//! command — and the checks that refuse to replay a recording with other model files.

use crate::error::{Result, ResultExt as _, bail};
use rgd_cache::{CacheMode, CallCache, Record};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use crate::session::Session;

/// One component that called models through the cache.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Component {
    /// Backend identity (kind, model file sha256, options): part of every call's key.
    pub identity: String,
    /// Its pipeline table (model, options).
    pub table: toml::Table,
}

/// An example request of one component and operation (the prompt as sent).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Prompt {
    /// Backend identity.
    pub identity: String,
    /// Operation (`score`, `generate`, `embed`).
    pub op: String,
    /// Number of calls of this identity and operation.
    pub calls: u64,
    /// The first request, verbatim.
    pub example_request: serde_json::Value,
}

/// The manifest of a recording (`NAME.manifest.json` beside `NAME.jsonl.gz`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    /// Manifest format version.
    pub format: u32,
    /// The recording file name.
    pub recording: String,
    /// Number of calls in it.
    pub calls: usize,
    /// sha256 of the recording file: a replay beside this manifest checks it (manifests of
    /// format 1 have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// When it was written (UTC, RFC 3339).
    pub date: String,
    /// The command that produced it.
    pub command: String,
    /// rgd's version.
    pub rgd_version: String,
    /// The pipeline file, as given.
    pub pipeline: String,
    /// Components (`pool.NAME`, `backends.NAME`, `embedder`) and their identities.
    pub components: BTreeMap<String, Component>,
    /// One example request per identity and operation, with call counts.
    pub prompts: Vec<Prompt>,
    /// The pipeline file's text (every parameter of the run).
    pub pipeline_toml: String,
}

/// The manifest path of a recording: `x.jsonl.gz` -> `x.manifest.json`.
pub fn manifest_path(recording: &Path) -> PathBuf {
    let name = recording
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name
        .strip_suffix(".jsonl.gz")
        .or_else(|| name.strip_suffix(".jsonl"))
        .unwrap_or(&name);
    recording.with_file_name(format!("{stem}.manifest.json"))
}

/// The hex sha256 of a file's bytes.
fn file_sha256(path: &Path) -> Result<String> {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    let mut f = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    std::io::copy(&mut f, &mut h).with_context(|| format!("reading {}", path.display()))?;
    Ok(format!("{:x}", h.finalize()))
}

/// Open a recording to replay: when its manifest is beside it and holds the file's sha256, the
/// file must still have it (each record's response digest is checked as it is read).
pub fn replay(path: &Path) -> Result<CallCache> {
    let mp = manifest_path(path);
    if let Ok(text) = std::fs::read_to_string(&mp) {
        let manifest: Manifest = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a recording manifest", mp.display()))?;
        if let Some(want) = &manifest.sha256 {
            rgd_cache::check_regular_file(path)?;
            let got = file_sha256(path)?;
            if got != *want {
                bail!(
                    "{}: its sha256 is {got}, but its manifest {} says {want}: the recording was changed after it was written (re-record it with `--record`, or restore it)",
                    path.display(),
                    mp.display()
                );
            }
        }
    }
    Ok(CallCache::from_recording(path)?)
}

/// Note the components of a run, and when the cache replays (read_only), refuse components
/// the recording was not made with: a different model file has a different hash, so none of
/// its calls can be in the recording.
pub fn check_components(
    session: &Session,
    cache: &CallCache,
    components: Vec<(String, String, toml::Table)>,
) -> Result<()> {
    session.note_components(&components);
    if cache.mode() != CacheMode::ReadOnly {
        return Ok(());
    }
    let recorded = cache.identities()?;
    let manifest = std::fs::read_to_string(manifest_path(cache.path()))
        .ok()
        .and_then(|t| serde_json::from_str::<Manifest>(&t).ok());
    for (role, identity, _) in components {
        if recorded.contains_key(&identity) {
            continue;
        }
        let recorded_as = manifest.as_ref().and_then(|m| m.components.get(&role));
        // a named backend the pipeline may never call is refused only when the recording
        // names it with another model; pool members and the embedder always make calls
        if role.starts_with("backends.") && recorded_as.is_none_or(|c| c.identity == identity) {
            continue;
        }
        let was = recorded_as
            .map(|c| format!("it was made with `{}` for `{role}`", c.identity))
            .unwrap_or_else(|| {
                format!(
                    "it holds calls of: {}",
                    recorded.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            });
        bail!(
            "{}: refused: no recorded call of `{role}` = `{identity}` (its model file's hash is part of the identity); {was}. A recording replays only with the model files it was made with: use those, or recompute with `--live`",
            cache.path().display()
        );
    }
    Ok(())
}

/// Write the calls this run made or replayed, and the manifest (after a run); returns the
/// number of calls and the manifest's path.
pub fn write(session: &Session, pipeline: &Path, out: &Path) -> Result<(usize, PathBuf)> {
    let Some(cache) = session.cache() else {
        bail!(
            "--record: the pipeline {} calls no model (nothing to record)",
            pipeline.display()
        );
    };
    if let Some(d) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(d)?;
    }
    let calls = cache.export_touched(out)?;
    let mut prompts: BTreeMap<(String, String), Prompt> = BTreeMap::new();
    let f = std::fs::File::open(out)?;
    let reader = std::io::BufReader::new(flate2::read::GzDecoder::new(f));
    for line in reader.lines() {
        let rec: Record = serde_json::from_str(&line?)?;
        let p = prompts
            .entry((rec.identity.clone(), rec.op.clone()))
            .or_insert_with(|| Prompt {
                identity: rec.identity.clone(),
                op: rec.op.clone(),
                calls: 0,
                example_request: serde_json::from_str(rec.request.get()).unwrap_or_default(),
            });
        p.calls += 1;
    }
    let components = session
        .components()
        .iter()
        .map(|(role, (identity, table))| {
            (
                role.clone(),
                Component {
                    identity: identity.clone(),
                    table: table.clone(),
                },
            )
        })
        .collect();
    let manifest = Manifest {
        format: 2,
        recording: out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        calls,
        sha256: Some(file_sha256(out)?),
        date: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        rgd_version: env!("CARGO_PKG_VERSION").to_string(),
        pipeline: pipeline.display().to_string(),
        components,
        prompts: prompts.into_values().collect(),
        pipeline_toml: std::fs::read_to_string(pipeline)
            .with_context(|| format!("reading {}", pipeline.display()))?,
    };
    let mp = manifest_path(out);
    std::fs::write(&mp, serde_json::to_vec_pretty(&manifest)?)
        .with_context(|| format!("writing {}", mp.display()))?;
    Ok((calls, mp))
}
