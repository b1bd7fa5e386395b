//! The call cache: every backend call (score, generate, embed) is keyed by a sha256 of the
//! backend identity (the model file's hash), the operation and the full request (seed
//! included), and its response stored in SQLite (rusqlite, bundled).
//!
//! Modes: `read_write` (default: a miss calls the model and stores the answer), `read_only`
//! ("replay": a miss is an error naming the call), `off`. Each answer is committed on its own
//! (SQLite WAL), so a run killed with SIGKILL keeps every answer it finished and a rerun makes
//! only the missing calls. The cache is checked at open (`PRAGMA quick_check`); a corrupt file
//! is reported, never silently ignored. `export`/`import` move calls as gzip-compressed JSON
//! lines ("recordings") so real runs can be committed and replayed elsewhere.

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use ndarray::Array2;
use rgd_core::{ChoiceScores, Embedder, GenerateRequest, Generation, LlmBackend, ScoreRequest};
use rusqlite::{Connection, OptionalExtension, params};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// SQLite failed.
    #[error("call cache {}: {source}", path.display())]
    Sqlite {
        /// The cache file.
        path: PathBuf,
        /// The error.
        #[source]
        source: rusqlite::Error,
    },
    /// The file is not a healthy SQLite database.
    #[error("call cache {} is corrupt ({detail}); move it away (answers in it are lost) or restore it from a recording with `rgd cache import`", path.display())]
    Corrupt {
        /// The cache file.
        path: PathBuf,
        /// What the check said.
        detail: String,
    },
    /// Replay mode and the call was never recorded.
    #[error(
        "replay miss: {} has no recorded answer for {op} on `{identity}` (request {request}); recompute it by calling the model: rerun with `--live` (cache in read_write mode; add `--record FILE` to write a new recording)", cache.display()
    )]
    Miss {
        /// Operation.
        op: String,
        /// Backend identity.
        identity: String,
        /// The request, abridged.
        request: String,
        /// The cache file or recording replayed.
        cache: PathBuf,
    },
    /// A stored answer parses but cannot be the answer to its request (wrong number of
    /// values, a non-finite number): an edited or damaged record.
    #[error("call cache {}: the stored answer for {op} on `{identity}` (key {key}) does not fit its request: {detail}; delete the record or rerun with `--live` against a fresh cache", path.display())]
    BadRecord {
        /// The cache file or recording.
        path: PathBuf,
        /// Operation.
        op: String,
        /// Backend identity.
        identity: String,
        /// The record's key.
        key: String,
        /// What does not fit.
        detail: String,
    },
    /// A recording line is malformed.
    #[error("{}:{line}: {msg}", path.display())]
    Recording {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        msg: String,
    },
    /// File I/O.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl From<CacheError> for rgd_core::Error {
    fn from(e: CacheError) -> Self {
        rgd_core::Error::component("cache", e)
    }
}

/// How the cache is used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CacheMode {
    /// Hits are served; misses call the model and are stored.
    #[default]
    ReadWrite,
    /// Hits are served; a miss is an error (replay).
    ReadOnly,
    /// Every call goes to the model; nothing is stored.
    Off,
}

/// One recorded call (a line of a recording). Request and response are kept as the exact
/// JSON text the cache stored: the key hashes the request's text, so re-serializing it (which
/// would reorder its fields) would break the key check on import.
#[derive(Debug, Serialize, Deserialize)]
pub struct Record {
    /// sha256 key.
    pub key: String,
    /// Backend identity.
    pub identity: String,
    /// Operation.
    pub op: String,
    /// The request, verbatim.
    pub request: Box<serde_json::value::RawValue>,
    /// The response, verbatim.
    pub response: Box<serde_json::value::RawValue>,
}

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS calls (
    key TEXT PRIMARY KEY, identity TEXT NOT NULL, op TEXT NOT NULL,
    request TEXT NOT NULL, response TEXT NOT NULL);";

/// The persistent call cache (cheap to clone; one SQLite connection behind a mutex).
#[derive(Clone, Debug)]
pub struct CallCache {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    mode: CacheMode,
    conn: Mutex<Connection>,
    hits: AtomicU64,
    misses: AtomicU64,
    /// Keys served or stored since open (what `export_touched` writes).
    touched: Mutex<std::collections::BTreeSet<String>>,
}

fn abridge(s: &str) -> String {
    if s.len() <= 240 {
        s.to_string()
    } else {
        let mut cut = 240;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}…", &s[..cut])
    }
}

impl CallCache {
    /// Open (or create) the cache file.
    pub fn open(path: &Path, mode: CacheMode) -> Result<CallCache, CacheError> {
        let sq = |source| CacheError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        if let Some(d) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(d).map_err(|source| CacheError::Io {
                path: d.to_path_buf(),
                source,
            })?;
        }
        let existed = path.exists();
        let conn = if mode == CacheMode::ReadOnly {
            Connection::open_with_flags(
                path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                    | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
        } else {
            Connection::open(path)
        }
        .map_err(|e| CacheError::Corrupt {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
        if existed {
            let check: Result<String, _> = conn.query_row("PRAGMA quick_check", [], |r| r.get(0));
            match check {
                Ok(s) if s == "ok" => {}
                Ok(s) => {
                    return Err(CacheError::Corrupt {
                        path: path.to_path_buf(),
                        detail: s,
                    });
                }
                Err(e) => {
                    return Err(CacheError::Corrupt {
                        path: path.to_path_buf(),
                        detail: e.to_string(),
                    });
                }
            }
        }
        if mode != CacheMode::ReadOnly {
            // WAL + synchronous=NORMAL: every committed call survives a killed process
            conn.execute_batch(&format!(
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; {SCHEMA}"
            ))
            .map_err(|e| CacheError::Corrupt {
                path: path.to_path_buf(),
                detail: e.to_string(),
            })?;
        } else {
            conn.query_row("SELECT count(*) FROM calls", [], |r| r.get::<_, i64>(0))
                .map_err(sq)?;
        }
        Ok(CallCache {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                mode,
                conn: Mutex::new(conn),
                hits: AtomicU64::new(0),
                misses: AtomicU64::new(0),
                touched: Default::default(),
            }),
        })
    }

    /// A cache that stores nothing (mode `off`, in memory).
    pub fn off() -> CallCache {
        CallCache {
            inner: Arc::new(Inner {
                path: PathBuf::from(":memory:"),
                mode: CacheMode::Off,
                conn: Mutex::new(Connection::open_in_memory().expect("in-memory SQLite opens")),
                hits: AtomicU64::new(0),
                misses: AtomicU64::new(0),
                touched: Default::default(),
            }),
        }
    }

    /// The mode.
    pub fn mode(&self) -> CacheMode {
        self.inner.mode
    }

    /// The cache file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// `(hits, misses)` since open; a miss is a real model call.
    pub fn stats(&self) -> (u64, u64) {
        (
            self.inner.hits.load(Ordering::Relaxed),
            self.inner.misses.load(Ordering::Relaxed),
        )
    }

    fn sq(&self) -> impl Fn(rusqlite::Error) -> CacheError + '_ {
        move |source| CacheError::Sqlite {
            path: self.inner.path.clone(),
            source,
        }
    }

    /// The key of a call.
    pub fn key(identity: &str, op: &str, request: &str) -> String {
        let mut h = Sha256::new();
        for part in [identity, op, request] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        format!("{:x}", h.finalize())
    }

    /// A stored response, if any.
    pub fn get_raw(&self, key: &str) -> Result<Option<String>, CacheError> {
        let conn = self.inner.conn.lock().unwrap_or_else(|p| p.into_inner());
        let mut st = conn
            .prepare_cached("SELECT response FROM calls WHERE key = ?1")
            .map_err(self.sq())?;
        st.query_row(params![key], |r| r.get(0))
            .optional()
            .map_err(self.sq())
    }

    fn put_raw(
        &self,
        key: &str,
        identity: &str,
        op: &str,
        request: &str,
        response: &str,
    ) -> Result<(), CacheError> {
        let conn = self.inner.conn.lock().unwrap_or_else(|p| p.into_inner());
        let mut st = conn
            .prepare_cached(
                "INSERT OR REPLACE INTO calls (key, identity, op, request, response) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .map_err(self.sq())?;
        st.execute(params![key, identity, op, request, response])
            .map_err(self.sq())?;
        Ok(())
    }

    /// Serve a call from the cache or compute (and, in read_write mode, store) it. A stored
    /// answer is checked against its request with `fits` (an error naming the key when it does
    /// not fit: records are read from outside).
    pub fn call<Q: Serialize, R: Serialize + DeserializeOwned>(
        &self,
        identity: &str,
        op: &str,
        request: &Q,
        fits: impl Fn(&R) -> Result<(), String>,
        compute: impl FnOnce() -> rgd_core::Result<R>,
    ) -> rgd_core::Result<R> {
        if self.inner.mode == CacheMode::Off {
            self.inner.misses.fetch_add(1, Ordering::Relaxed);
            return compute();
        }
        let req =
            serde_json::to_string(request).map_err(|e| rgd_core::Error::Data(e.to_string()))?;
        let key = Self::key(identity, op, &req);
        if let Some(resp) = self.get_raw(&key)? {
            if let Ok(v) = serde_json::from_str(&resp) {
                fits(&v).map_err(|detail| CacheError::BadRecord {
                    path: self.inner.path.clone(),
                    op: op.to_string(),
                    identity: identity.to_string(),
                    key: key.clone(),
                    detail,
                })?;
                self.inner.hits.fetch_add(1, Ordering::Relaxed);
                self.touch(&key);
                return Ok(v);
            }
            // an unreadable stored answer (e.g. an older format) is recomputed in read_write
            if self.inner.mode == CacheMode::ReadOnly {
                return Err(CacheError::Corrupt {
                    path: self.inner.path.clone(),
                    detail: format!("stored answer for {op} on `{identity}` does not parse"),
                }
                .into());
            }
        }
        if self.inner.mode == CacheMode::ReadOnly {
            return Err(CacheError::Miss {
                op: op.to_string(),
                identity: identity.to_string(),
                request: abridge(&req),
                cache: self.inner.path.clone(),
            }
            .into());
        }
        self.inner.misses.fetch_add(1, Ordering::Relaxed);
        let value = compute()?;
        let resp =
            serde_json::to_string(&value).map_err(|e| rgd_core::Error::Data(e.to_string()))?;
        self.put_raw(&key, identity, op, &req, &resp)?;
        self.touch(&key);
        Ok(value)
    }

    fn touch(&self, key: &str) {
        self.inner
            .touched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.to_string());
    }

    /// Replay a recording: its calls are loaded into an in-memory cache in `read_only` mode
    /// (a call it lacks is a [`CacheError::Miss`] naming the recording).
    pub fn from_recording(path: &Path) -> Result<CallCache, CacheError> {
        let conn = Connection::open_in_memory().map_err(|source| CacheError::Sqlite {
            path: path.to_path_buf(),
            source,
        })?;
        conn.execute_batch(SCHEMA)
            .map_err(|source| CacheError::Sqlite {
                path: path.to_path_buf(),
                source,
            })?;
        let c = CallCache {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                mode: CacheMode::ReadOnly,
                conn: Mutex::new(conn),
                hits: AtomicU64::new(0),
                misses: AtomicU64::new(0),
                touched: Default::default(),
            }),
        };
        c.import(path)?;
        Ok(c)
    }

    /// Every distinct backend identity stored, with its number of calls per operation.
    pub fn identities(
        &self,
    ) -> Result<
        std::collections::BTreeMap<String, std::collections::BTreeMap<String, u64>>,
        CacheError,
    > {
        let conn = self.inner.conn.lock().unwrap_or_else(|p| p.into_inner());
        let mut st = conn
            .prepare("SELECT identity, op, count(*) FROM calls GROUP BY identity, op")
            .map_err(self.sq())?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })
            .map_err(self.sq())?;
        let mut out: std::collections::BTreeMap<String, std::collections::BTreeMap<String, u64>> =
            Default::default();
        for row in rows {
            let (id, op, n) = row.map_err(self.sq())?;
            out.entry(id).or_default().insert(op, n as u64);
        }
        Ok(out)
    }

    /// Write the calls served or stored since this cache was opened (a run's recording).
    pub fn export_touched(&self, out: &Path) -> Result<usize, CacheError> {
        let keys = self
            .inner
            .touched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        self.export_where(out, |key, _| keys.contains(key))
    }

    /// Number of stored calls.
    pub fn len(&self) -> Result<usize, CacheError> {
        let conn = self.inner.conn.lock().unwrap_or_else(|p| p.into_inner());
        conn.query_row("SELECT count(*) FROM calls", [], |r| r.get::<_, i64>(0))
            .map(|n| n as usize)
            .map_err(self.sq())
    }

    /// Whether the cache holds no call.
    pub fn is_empty(&self) -> Result<bool, CacheError> {
        Ok(self.len()? == 0)
    }

    /// Write every call (optionally only those of some identities) as gzip JSON lines,
    /// sorted by key so recordings diff well.
    pub fn export(&self, out: &Path, identities: Option<&[String]>) -> Result<usize, CacheError> {
        self.export_where(out, |_, identity| {
            identities.is_none_or(|ids| ids.iter().any(|i| i == identity))
        })
    }

    fn export_where(
        &self,
        out: &Path,
        keep: impl Fn(&str, &str) -> bool,
    ) -> Result<usize, CacheError> {
        let conn = self.inner.conn.lock().unwrap_or_else(|p| p.into_inner());
        let mut st = conn
            .prepare("SELECT key, identity, op, request, response FROM calls ORDER BY key")
            .map_err(self.sq())?;
        let io = |source| CacheError::Io {
            path: out.to_path_buf(),
            source,
        };
        let f = std::fs::File::create(out).map_err(io)?;
        let mut gz = GzEncoder::new(std::io::BufWriter::new(f), flate2::Compression::best());
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                ))
            })
            .map_err(self.sq())?;
        let mut n = 0;
        for row in rows {
            let (key, identity, op, request, response) = row.map_err(self.sq())?;
            if !keep(&key, &identity) {
                continue;
            }
            let raw = |text: String| {
                serde_json::value::RawValue::from_string(text.clone()).or_else(|_| {
                    // not JSON (never written by rgd): keep it as a JSON string
                    serde_json::value::to_raw_value(&text)
                })
            };
            let rec = Record {
                key,
                identity,
                op,
                request: raw(request).map_err(|e| io(std::io::Error::other(e)))?,
                response: raw(response).map_err(|e| io(std::io::Error::other(e)))?,
            };
            serde_json::to_writer(&mut gz, &rec).map_err(|e| io(std::io::Error::other(e)))?;
            gz.write_all(b"\n").map_err(io)?;
            n += 1;
        }
        gz.finish().map_err(io)?.flush().map_err(io)?;
        Ok(n)
    }

    /// Import a recording (gzip JSON lines; plain JSON lines also accepted); each line's key is
    /// checked against its content. Returns the number of calls added or replaced.
    pub fn import(&self, path: &Path) -> Result<usize, CacheError> {
        let io = |source| CacheError::Io {
            path: path.to_path_buf(),
            source,
        };
        let f = std::fs::File::open(path).map_err(io)?;
        let reader: Box<dyn BufRead> = if path.extension().is_some_and(|e| e == "gz") {
            Box::new(BufReader::new(GzDecoder::new(f)))
        } else {
            Box::new(BufReader::new(f))
        };
        let mut conn = self.inner.conn.lock().unwrap_or_else(|p| p.into_inner());
        let tx = conn.transaction().map_err(self.sq())?;
        let mut n = 0;
        for (i, line) in reader.lines().enumerate() {
            let line = line.map_err(io)?;
            if line.trim().is_empty() {
                continue;
            }
            let bad = |msg: String| CacheError::Recording {
                path: path.to_path_buf(),
                line: i + 1,
                msg,
            };
            let rec: Record = serde_json::from_str(&line).map_err(|e| bad(e.to_string()))?;
            let req = rec.request.get().to_string();
            if Self::key(&rec.identity, &rec.op, &req) != rec.key {
                return Err(bad("key does not match identity, op and request".into()));
            }
            let resp = rec.response.get().to_string();
            tx.execute(
                "INSERT OR REPLACE INTO calls (key, identity, op, request, response) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![rec.key, rec.identity, rec.op, req, resp],
            )
            .map_err(|source| CacheError::Sqlite {
                path: self.inner.path.clone(),
                source,
            })?;
            n += 1;
        }
        tx.commit().map_err(|source| CacheError::Sqlite {
            path: self.inner.path.clone(),
            source,
        })?;
        Ok(n)
    }
}

/// A stored letter score fits its request: one finite log-probability per option.
fn fits_score(req: &ScoreRequest, r: &ChoiceScores) -> Result<(), String> {
    if r.logprobs.len() != req.n_options {
        return Err(format!(
            "{} log-probabilities for {} options",
            r.logprobs.len(),
            req.n_options
        ));
    }
    if let Some(v) = r.logprobs.iter().find(|v| !v.is_finite() || **v > 1e-9) {
        return Err(format!("log-probability {v} is not a finite number <= 0"));
    }
    if !(r.seconds >= 0.0 && r.seconds.is_finite()) {
        return Err(format!("seconds {} is not a finite number >= 0", r.seconds));
    }
    Ok(())
}

/// A stored generation is well formed: a finite confidence <= 0, a non-negative duration.
fn fits_generation(g: &Generation) -> Result<(), String> {
    if g.mean_logprob.is_nan() || g.mean_logprob > 1e-9 {
        return Err(format!(
            "mean_logprob {} is not a number <= 0",
            g.mean_logprob
        ));
    }
    if !(g.seconds >= 0.0 && g.seconds.is_finite()) {
        return Err(format!("seconds {} is not a finite number >= 0", g.seconds));
    }
    Ok(())
}

/// An LLM backend whose every call goes through the cache.
#[derive(Debug)]
pub struct CachedBackend {
    /// The backend.
    pub inner: Box<dyn LlmBackend>,
    /// The cache.
    pub cache: CallCache,
}

impl LlmBackend for CachedBackend {
    fn identity(&self) -> String {
        self.inner.identity()
    }
    fn score_choices(&self, req: &ScoreRequest) -> rgd_core::Result<ChoiceScores> {
        self.cache.call(
            &self.inner.identity(),
            "score",
            req,
            |r| fits_score(req, r),
            || self.inner.score_choices(req),
        )
    }
    fn generate(&self, req: &GenerateRequest) -> rgd_core::Result<Generation> {
        self.cache.call(
            &self.inner.identity(),
            "generate",
            req,
            fits_generation,
            || self.inner.generate(req),
        )
    }
    fn generate_stream(
        &self,
        req: &GenerateRequest,
        on_text: &mut dyn FnMut(&str),
    ) -> rgd_core::Result<Generation> {
        // the same cache entry as `generate`: a cached reply comes back in one piece
        let mut streamed = false;
        let g = self.cache.call(
            &self.inner.identity(),
            "generate",
            req,
            fits_generation,
            || {
                streamed = true;
                self.inner.generate_stream(req, on_text)
            },
        )?;
        if !streamed {
            on_text(&g.text);
        }
        Ok(g)
    }
    fn parallelism(&self) -> usize {
        self.inner.parallelism()
    }
}

/// An embedder whose every text goes through the cache (one entry per text, so a batch
/// with a few new texts embeds only those).
#[derive(Debug)]
pub struct CachedEmbedder {
    /// The embedder.
    pub inner: Box<dyn Embedder>,
    /// The cache.
    pub cache: CallCache,
}

impl Embedder for CachedEmbedder {
    fn identity(&self) -> String {
        self.inner.identity()
    }
    fn embed(&self, texts: &[&str]) -> rgd_core::Result<Array2<f32>> {
        let id = self.inner.identity();
        let mut found: Vec<Option<Vec<f32>>> = Vec::with_capacity(texts.len());
        let mut todo = Vec::new();
        for (i, t) in texts.iter().enumerate() {
            let key = CallCache::key(&id, "embed", &serde_json::to_string(t).unwrap_or_default());
            let hit = if self.cache.mode() == CacheMode::Off {
                None
            } else {
                self.cache
                    .get_raw(&key)?
                    .and_then(|r| serde_json::from_str::<Vec<f32>>(&r).ok())
            };
            if hit.as_ref().is_some_and(|v| v.is_empty()) {
                return Err(CacheError::BadRecord {
                    path: self.cache.inner.path.clone(),
                    op: "embed".into(),
                    identity: id,
                    key,
                    detail: "an empty vector".into(),
                }
                .into());
            }
            if hit.is_some() {
                self.cache.inner.hits.fetch_add(1, Ordering::Relaxed);
                self.cache.touch(&key);
            } else {
                todo.push(i);
            }
            found.push(hit);
        }
        if !todo.is_empty() {
            if self.cache.mode() == CacheMode::ReadOnly {
                return Err(CacheError::Miss {
                    op: "embed".into(),
                    identity: id,
                    request: abridge(texts[todo[0]]),
                    cache: self.cache.inner.path.clone(),
                }
                .into());
            }
            let batch: Vec<&str> = todo.iter().map(|&i| texts[i]).collect();
            let out = self.inner.embed(&batch)?;
            for (r, &i) in todo.iter().enumerate() {
                let v = out.row(r).to_vec();
                self.cache.inner.misses.fetch_add(1, Ordering::Relaxed);
                if self.cache.mode() == CacheMode::ReadWrite {
                    let req = serde_json::to_string(texts[i]).unwrap_or_default();
                    let key = CallCache::key(&id, "embed", &req);
                    let resp = serde_json::to_string(&v).unwrap_or_default();
                    self.cache.put_raw(&key, &id, "embed", &req, &resp)?;
                    self.cache.touch(&key);
                }
                found[i] = Some(v);
            }
        }
        let dim = found
            .first()
            .and_then(|v| v.as_ref())
            .map(Vec::len)
            .unwrap_or(0);
        let mut m = Array2::zeros((texts.len(), dim));
        for (i, v) in found.into_iter().enumerate() {
            let v = v.expect("every text embedded");
            if v.len() != dim {
                return Err(rgd_core::Error::Data(format!(
                    "embedder `{id}` returned {} values for text {i}, {dim} for the first",
                    v.len()
                )));
            }
            m.row_mut(i).assign(&ndarray::ArrayView1::from(&v[..]));
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backend that always scores A highest among the request's options.
    #[derive(Debug)]
    struct Fixed;
    impl LlmBackend for Fixed {
        fn identity(&self) -> String {
            "fixed#1".into()
        }
        fn score_choices(&self, req: &ScoreRequest) -> rgd_core::Result<ChoiceScores> {
            let mut logprobs = vec![-3.0; req.n_options];
            logprobs[0] = -0.1;
            Ok(ChoiceScores {
                logprobs,
                seconds: 0.5,
            })
        }
        fn generate(&self, _: &GenerateRequest) -> rgd_core::Result<Generation> {
            unreachable!("not used")
        }
    }

    #[test]
    fn a_stored_answer_that_does_not_fit_its_request_is_an_error_naming_the_key() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("c.sqlite");
        let cache = CallCache::open(&p, CacheMode::ReadWrite).unwrap();
        let b = CachedBackend {
            inner: Box::new(Fixed),
            cache: cache.clone(),
        };
        let req = ScoreRequest {
            messages: vec![rgd_core::Message {
                role: "user".into(),
                content: "2+2? (A) 4 (B) 5 (C) 6 (D) 7".into(),
            }],
            n_options: 4,
            answer_prefix: "Answer:".into(),
        };
        assert_eq!(b.score_choices(&req).unwrap().logprobs.len(), 4);
        let key = CallCache::key("fixed#1", "score", &serde_json::to_string(&req).unwrap());
        let req_text = serde_json::to_string(&req).unwrap();
        for (stored, want) in [
            (
                r#"{"logprobs":[-0.1]}"#,
                "1 log-probabilities for 4 options",
            ),
            (
                r#"{"logprobs":[-0.1,-3.0,-3.0,2.5],"seconds":0.5}"#,
                "log-probability 2.5 is not a finite number <= 0",
            ),
            (
                r#"{"logprobs":[-0.1,-3.0,-3.0,-3.0],"seconds":-1.0}"#,
                "seconds -1 is not a finite number >= 0",
            ),
        ] {
            cache
                .put_raw(&key, "fixed#1", "score", &req_text, stored)
                .unwrap();
            let e = b.score_choices(&req).unwrap_err().to_string();
            assert!(e.contains(&key) && e.contains(want), "{e}");
        }
        // a recording with the same record is refused on replay as well
        cache
            .put_raw(
                &key,
                "fixed#1",
                "score",
                &req_text,
                r#"{"logprobs":[-0.1]}"#,
            )
            .unwrap();
        let rec = t.path().join("rec.jsonl.gz");
        cache.export(&rec, None).unwrap();
        let replay = CachedBackend {
            inner: Box::new(Fixed),
            cache: CallCache::from_recording(&rec).unwrap(),
        };
        let e = replay.score_choices(&req).unwrap_err().to_string();
        assert!(e.contains(&key) && e.contains("rec.jsonl.gz"), "{e}");
    }

    #[test]
    fn read_write_then_replay_then_miss() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("c.sqlite");
        let c = CallCache::open(&p, CacheMode::ReadWrite).unwrap();
        let mut calls = 0;
        let v: Vec<f64> = c
            .call(
                "m#abc",
                "score",
                &("q", 1),
                |_| Ok(()),
                || {
                    calls += 1;
                    Ok(vec![1.0, 2.0])
                },
            )
            .unwrap();
        let w: Vec<f64> = c
            .call(
                "m#abc",
                "score",
                &("q", 1),
                |_| Ok(()),
                || {
                    calls += 1;
                    Ok(vec![9.0])
                },
            )
            .unwrap();
        assert_eq!((v.clone(), w, calls), (vec![1.0, 2.0], vec![1.0, 2.0], 1));
        assert_eq!(c.stats(), (1, 1));
        let out = t.path().join("rec.jsonl.gz");
        assert_eq!(c.export(&out, None).unwrap(), 1);
        drop(c);
        let r = CallCache::open(&p, CacheMode::ReadOnly).unwrap();
        let v2: Vec<f64> = r
            .call("m#abc", "score", &("q", 1), |_| Ok(()), || unreachable!())
            .unwrap();
        assert_eq!(v2, v);
        let e = r
            .call::<_, Vec<f64>>("m#abc", "score", &("q", 2), |_| Ok(()), || unreachable!())
            .unwrap_err();
        assert!(
            e.to_string().contains("replay miss") && e.to_string().contains("m#abc"),
            "{e}"
        );
        // a recording imports into a fresh cache
        let fresh = CallCache::open(&t.path().join("d.sqlite"), CacheMode::ReadWrite).unwrap();
        assert_eq!(fresh.import(&out).unwrap(), 1);
        let v3: Vec<f64> = fresh
            .call("m#abc", "score", &("q", 1), |_| Ok(()), || unreachable!())
            .unwrap();
        assert_eq!(v3, v);
    }

    #[test]
    fn a_struct_request_survives_export_and_import() {
        // fields out of alphabetical order and a float with a long expansion: the recording
        // must keep the request's exact text, or its key no longer matches
        #[derive(Serialize)]
        struct Req {
            zeta: f64,
            alpha: &'static str,
        }
        let req = Req {
            zeta: 0.1 + 0.2,
            alpha: "q",
        };
        let t = tempfile::tempdir().unwrap();
        let c = CallCache::open(&t.path().join("c.sqlite"), CacheMode::ReadWrite).unwrap();
        let v: Vec<f64> = c
            .call("m#1", "score", &req, |_| Ok(()), || Ok(vec![0.5]))
            .unwrap();
        let out = t.path().join("rec.jsonl.gz");
        assert_eq!(c.export(&out, None).unwrap(), 1);
        let fresh = CallCache::open(&t.path().join("d.sqlite"), CacheMode::ReadWrite).unwrap();
        assert_eq!(fresh.import(&out).unwrap(), 1);
        let back: Vec<f64> = fresh
            .call("m#1", "score", &req, |_| Ok(()), || unreachable!())
            .unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn a_corrupt_cache_file_is_reported() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("c.sqlite");
        std::fs::write(&p, vec![0x42u8; 8192]).unwrap();
        let e = CallCache::open(&p, CacheMode::ReadWrite)
            .unwrap_err()
            .to_string();
        assert!(e.contains("corrupt"), "{e}");
    }

    #[test]
    fn a_tampered_recording_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("r.jsonl");
        let key = CallCache::key("id", "score", "\"x\"");
        std::fs::write(&p, format!("{{\"key\":\"{key}\",\"identity\":\"id\",\"op\":\"score\",\"request\":\"y\",\"response\":1}}\n")).unwrap();
        let c = CallCache::open(&t.path().join("c.sqlite"), CacheMode::ReadWrite).unwrap();
        let e = c.import(&p).unwrap_err().to_string();
        assert!(e.contains(":1: key does not match"), "{e}");
    }
}
