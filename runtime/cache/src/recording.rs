//! Recordings: a cache's calls as gzip JSON lines, replayed read-only or imported; the
//! identities a cache holds.

use super::*;

impl CallCache {
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
            let response = raw(response).map_err(|e| io(std::io::Error::other(e)))?;
            let rec = Record {
                key,
                identity,
                op,
                request: raw(request).map_err(|e| io(std::io::Error::other(e)))?,
                response_sha256: Some(crate::response_digest(response.get())),
                response,
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
        crate::check_regular_file(path)?;
        let f = std::fs::File::open(path).map_err(io)?;
        let reader: Box<dyn BufRead> = if path.extension().is_some_and(|e| e == "gz") {
            Box::new(BufReader::new(GzDecoder::new(f)))
        } else {
            Box::new(BufReader::new(f))
        };
        let mut conn = self.inner.conn.lock().unwrap_or_else(|p| p.into_inner());
        let tx = conn.transaction().map_err(self.sq())?;
        let mut n = 0;
        // a key seen twice would let the later line silently win: refuse it, naming both
        let mut seen: std::collections::HashMap<String, usize> = Default::default();
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
            if let Some(first) = seen.insert(rec.key.clone(), i + 1) {
                return Err(bad(format!(
                    "the call of line {first} again (key {}); a recording holds each call once",
                    rec.key
                )));
            }
            let resp = rec.response.get().to_string();
            if let Some(d) = &rec.response_sha256
                && *d != crate::response_digest(&resp)
            {
                return Err(bad(
                    "the response does not match its `response_sha256` (it was edited after it was recorded)".into(),
                ));
            }
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
