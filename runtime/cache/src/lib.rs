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
use rgd_core::{
    ChoiceScores, ClozeRequest, Embedder, GenerateRequest, Generation, LlmBackend, OptionScores,
    ScoreRequest,
};
use rusqlite::{Connection, OptionalExtension, params};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

mod cached;
mod recording;

pub use cached::{CachedBackend, CachedEmbedder};

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

rgd_core::component_error!(CacheError, "cache");

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
    /// sha256 of the response's text: checked on import, so a response edited after it was
    /// recorded (the key covers only the request) is refused. Written by every export;
    /// recordings from before it have none, and are read unchecked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_sha256: Option<String>,
}

/// The digest of a response's text (hex sha256).
pub fn response_digest(response: &str) -> String {
    format!("{:x}", Sha256::digest(response.as_bytes()))
}

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS calls (
    key TEXT PRIMARY KEY, identity TEXT NOT NULL, op TEXT NOT NULL,
    request TEXT NOT NULL, response TEXT NOT NULL);";

/// The SQLite `application_id` rgd writes into its cache files ("rgd1"): a file with another
/// non-zero id is another program's database, refused and never modified.
pub const APPLICATION_ID: i32 = 0x7267_6431;

/// A cache or recording path must be a regular file (or not exist yet): a FIFO, a device or
/// a folder would block or fail inside SQLite.
pub fn check_regular_file(path: &Path) -> Result<(), CacheError> {
    match std::fs::metadata(path) {
        Ok(m) if !m.is_file() => Err(CacheError::Corrupt {
            path: path.to_path_buf(),
            detail: "not a regular file (a folder, a FIFO or a device); give the path of an rgd cache file, or a new path to create one".into(),
        }),
        _ => Ok(()),
    }
}

/// An existing database is rgd's: its `application_id` is [`APPLICATION_ID`], or it is 0 and
/// its only table is rgd's `calls` with rgd's columns (a cache written before the marker).
fn check_ours(conn: &Connection, path: &Path) -> Result<(), CacheError> {
    let foreign = |detail: String| CacheError::Corrupt {
        path: path.to_path_buf(),
        detail: format!(
            "{detail}: not an rgd call cache (left untouched); give another path for the cache"
        ),
    };
    let id: i32 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(|e| foreign(e.to_string()))?;
    if id == APPLICATION_ID {
        return Ok(());
    }
    if id != 0 {
        return Err(foreign(format!("its SQLite application_id is {id:#x}")));
    }
    let mut st = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .map_err(|e| foreign(e.to_string()))?;
    let tables: Vec<String> = st
        .query_map([], |r| r.get(0))
        .and_then(|rows| rows.collect())
        .map_err(|e| foreign(e.to_string()))?;
    if tables.is_empty() {
        return Ok(()); // an empty database: nothing to lose
    }
    if tables != ["calls"] {
        return Err(foreign(format!(
            "it holds the tables {}",
            tables.join(", ")
        )));
    }
    let mut st = conn
        .prepare("SELECT name FROM pragma_table_info('calls')")
        .map_err(|e| foreign(e.to_string()))?;
    let cols: Vec<String> = st
        .query_map([], |r| r.get(0))
        .and_then(|rows| rows.collect())
        .map_err(|e| foreign(e.to_string()))?;
    if cols != ["key", "identity", "op", "request", "response"] {
        return Err(foreign(format!(
            "its table `calls` has the columns {}",
            cols.join(", ")
        )));
    }
    Ok(())
}

/// The persistent call cache (cheap to clone; one SQLite connection behind a mutex).
#[derive(Clone, Debug)]
pub struct CallCache {
    inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) path: PathBuf,
    pub(crate) mode: CacheMode,
    pub(crate) conn: Mutex<Connection>,
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    /// Keys served or stored since open (what `export_touched` writes).
    pub(crate) touched: Mutex<std::collections::BTreeSet<String>>,
}

pub(crate) fn abridge(s: &str) -> String {
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
        check_regular_file(path)?;
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
            check_ours(&conn, path)?;
        }
        if mode != CacheMode::ReadOnly {
            // WAL + synchronous=NORMAL: every committed call survives a killed process
            conn.execute_batch(&format!(
                "PRAGMA application_id = {APPLICATION_ID}; PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; {SCHEMA}"
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

    pub(crate) fn sq(&self) -> impl Fn(rusqlite::Error) -> CacheError + '_ {
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

    pub(crate) fn put_raw(
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
        self.call_batch(
            identity,
            op,
            std::slice::from_ref(request),
            |_, r| fits(r),
            |_| vec![compute()],
        )
        .pop()
        .expect("one request, one result")
    }

    /// [`CallCache::call`] for several requests: the stored ones are served, the others are
    /// computed together by `compute` (given their indices in `requests`, it returns one result
    /// per index, in order) and stored one by one.
    pub fn call_batch<Q: Serialize, R: Serialize + DeserializeOwned>(
        &self,
        identity: &str,
        op: &str,
        requests: &[Q],
        fits: impl Fn(&Q, &R) -> Result<(), String>,
        compute: impl FnOnce(&[usize]) -> Vec<rgd_core::Result<R>>,
    ) -> Vec<rgd_core::Result<R>> {
        if self.inner.mode == CacheMode::Off {
            self.inner
                .misses
                .fetch_add(requests.len() as u64, Ordering::Relaxed);
            let all: Vec<usize> = (0..requests.len()).collect();
            return compute(&all);
        }
        let mut out: Vec<Option<rgd_core::Result<R>>> = Vec::with_capacity(requests.len());
        let mut missing = Vec::new();
        let mut keys = Vec::with_capacity(requests.len());
        for (i, request) in requests.iter().enumerate() {
            match self.lookup(identity, op, request, |r| fits(request, r)) {
                Ok((key, req, Some(v))) => {
                    keys.push(Some((key, req)));
                    out.push(Some(Ok(v)));
                }
                Ok((key, req, None)) => {
                    keys.push(Some((key, req)));
                    missing.push(i);
                    out.push(None);
                }
                Err(e) => {
                    keys.push(None);
                    out.push(Some(Err(e)));
                }
            }
        }
        if !missing.is_empty() {
            self.inner
                .misses
                .fetch_add(missing.len() as u64, Ordering::Relaxed);
            let computed = compute(&missing);
            debug_assert_eq!(computed.len(), missing.len());
            for (&i, value) in missing.iter().zip(computed) {
                let Some((key, req)) = &keys[i] else { continue };
                out[i] = Some(value.and_then(|v| {
                    self.store(key, identity, op, req, &v)?;
                    Ok(v)
                }));
            }
        }
        out.into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(rgd_core::Error::Data(format!(
                        "the call cache's batch of {op} calls on `{identity}` lost a reply"
                    )))
                })
            })
            .collect()
    }

    /// The key and request text of a call, with its checked stored answer if there is one; in
    /// read-only mode a missing answer is an error.
    fn lookup<Q: Serialize, R: DeserializeOwned>(
        &self,
        identity: &str,
        op: &str,
        request: &Q,
        fits: impl Fn(&R) -> Result<(), String>,
    ) -> rgd_core::Result<(String, String, Option<R>)> {
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
                return Ok((key, req, Some(v)));
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
        Ok((key, req, None))
    }

    /// Store a computed answer (read_write mode) and mark it used by this run.
    fn store<R: Serialize>(
        &self,
        key: &str,
        identity: &str,
        op: &str,
        req: &str,
        value: &R,
    ) -> rgd_core::Result<()> {
        let resp =
            serde_json::to_string(value).map_err(|e| rgd_core::Error::Data(e.to_string()))?;
        self.put_raw(key, identity, op, req, &resp)?;
        self.touch(key);
        Ok(())
    }

    pub(crate) fn touch(&self, key: &str) {
        self.inner
            .touched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

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
    fn a_batch_computes_only_its_missing_calls_together_and_stores_each() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("c.sqlite");
        let c = CallCache::open(&p, CacheMode::ReadWrite).unwrap();
        let square = |missing: &[usize], reqs: &[u64]| -> Vec<rgd_core::Result<u64>> {
            missing
                .iter()
                .map(|&i| match reqs[i] {
                    // a failed call is returned, not stored
                    13 => Err(rgd_core::Error::Unanswerable("thirteen".into())),
                    x => Ok(x * x),
                })
                .collect()
        };
        let first = [2u64, 3];
        let out = c.call_batch("m", "sq", &first, |_, _| Ok(()), |m| square(m, &first));
        assert_eq!(
            out.into_iter().map(Result::unwrap).collect::<Vec<_>>(),
            [4, 9]
        );
        // 3 is stored: only 4 and 13 are computed, in one call, in their order
        let second = [3u64, 4, 13];
        let mut asked = Vec::new();
        let out = c.call_batch(
            "m",
            "sq",
            &second,
            |_, _| Ok(()),
            |m| {
                asked = m.to_vec();
                square(m, &second)
            },
        );
        assert_eq!(asked, [1, 2]);
        assert_eq!(out[0].as_ref().unwrap(), &9);
        assert_eq!(out[1].as_ref().unwrap(), &16);
        assert!(out[2].is_err());
        assert_eq!(c.stats(), (1, 4));
        drop(c);
        // replay: the stored ones are served, the failed one is a miss naming the call
        let r = CallCache::open(&p, CacheMode::ReadOnly).unwrap();
        let out = r.call_batch::<u64, u64>("m", "sq", &second, |_, _| Ok(()), |_| unreachable!());
        assert_eq!(out[1].as_ref().unwrap(), &16);
        let e = out[2].as_ref().unwrap_err().to_string();
        assert!(e.contains("replay miss") && e.contains("sq"), "{e}");
        // a stored answer that does not fit its request is an error for that request only
        let out = r.call_batch::<u64, u64>(
            "m",
            "sq",
            &[2, 3],
            |q, a| {
                if a == &(q * q) && *q != 3 {
                    Ok(())
                } else {
                    Err("no".into())
                }
            },
            |_| unreachable!(),
        );
        assert!(out[0].is_ok() && out[1].is_err());
    }

    #[test]
    fn read_write_then_replay_then_miss() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("c.sqlite");
        let c = CallCache::open(&p, CacheMode::ReadWrite).unwrap();
        let mut calls = 0;
        let mut call = |answer: Vec<f64>| -> Vec<f64> {
            let compute = || {
                calls += 1;
                Ok(answer)
            };
            c.call("m#abc", "score", &("q", 1), |_| Ok(()), compute)
                .unwrap()
        };
        let v = call(vec![1.0, 2.0]);
        let w = call(vec![9.0]);
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
        // a response edited after it was recorded: its digest no longer matches
        let out = t.path().join("rec.jsonl");
        let c2 = CallCache::open(&t.path().join("e.sqlite"), CacheMode::ReadWrite).unwrap();
        let _: Vec<f64> = c2
            .call(
                "id",
                "score",
                &"x",
                |_| Ok(()),
                || Ok(vec![-0.1, -2.0, -3.0]),
            )
            .unwrap();
        c2.export(&out, None).unwrap();
        let mut text = String::new();
        GzDecoder::new(std::fs::File::open(&out).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        assert!(text.contains("\"response_sha256\":"), "{text}");
        let rotated = text.replace("[-0.1,-2.0,-3.0]", "[-2.0,-3.0,-0.1]");
        assert_ne!(rotated, text);
        std::fs::write(&p, rotated).unwrap();
        let e = c.import(&p).unwrap_err().to_string();
        assert!(
            e.contains(":1: the response does not match its `response_sha256`"),
            "{e}"
        );
        // the same call twice (the later would silently win) names both lines
        let line = format!(
            "{{\"key\":\"{key}\",\"identity\":\"id\",\"op\":\"score\",\"request\":\"x\",\"response\":1}}\n"
        );
        std::fs::write(
            &p,
            format!("{line}{}", line.replace("\"response\":1", "\"response\":2")),
        )
        .unwrap();
        let e = c.import(&p).unwrap_err().to_string();
        assert!(e.contains(":2: the call of line 1 again"), "{e}");
    }
}
