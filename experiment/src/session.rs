//! The state of one run, passed explicitly: the call-cache options (from the command line or a
//! front end; they override the pipeline's `[cache]`), the cache opened once and shared by the
//! main data and every training source, the components that called through it, and where
//! progress goes.

use crate::error::{Result, bail};
use rgd_cache::{CacheMode, CallCache};
use rgd_core::{Context, Pipeline};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

/// Call-cache options given by the caller (the CLI's flags); each overrides `[cache]`.
#[derive(Clone, Debug, Default)]
pub struct CacheOptions {
    /// The call cache file (default: `[cache] path`, else `$RGD_CACHE_DIR/calls.sqlite`,
    /// else `~/.cache/rgd/calls.sqlite`); a recording (`.jsonl.gz`) replays read-only.
    pub cache: Option<PathBuf>,
    /// `read_write` (default), `read_only` (replay: a missing call is an error) or `off`.
    pub mode: Option<CacheMode>,
    /// Recompute: ignore the pipeline's `[cache] recording` and call the models.
    pub live: bool,
}

/// Where a run's progress goes (a terminal, a notebook, nowhere). Every method has a silent
/// default.
pub trait Progress: Send + Sync {
    /// A stage of the run starts.
    fn start(&self, _stage: &str) {}
    /// The stage ends after `seconds`, with a one-line note.
    fn done(&self, _stage: &str, _seconds: f64, _note: &str) {}
    /// `done` of `total` items of the current long step (model calls), with a label.
    fn items(&self, _label: &str, _done: usize, _total: usize) {}
    /// The long step's items are all done.
    fn items_done(&self) {}
    /// A line of detail (filters, sources, generation).
    fn info(&self, _line: &str) {}
    /// Legal but suspicious input: said even when the session is quiet.
    fn warn(&self, _line: &str) {}
}

/// Progress that goes nowhere.
#[derive(Clone, Copy, Debug, Default)]
pub struct Silent;

impl Progress for Silent {}

/// One run: options, the cache it opened, the components that called through it, progress.
pub struct Session {
    /// Cache options.
    pub options: CacheOptions,
    /// No progress and no detail lines.
    pub quiet: bool,
    progress: Arc<dyn Progress>,
    cache: OnceLock<CallCache>,
    components: Mutex<BTreeMap<String, (String, toml::Table)>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("options", &self.options)
            .field("quiet", &self.quiet)
            .finish_non_exhaustive()
    }
}

impl Default for Session {
    fn default() -> Session {
        Session::new(CacheOptions::default(), Arc::new(Silent), true)
    }
}

impl Session {
    /// A session with these options, reporting to `progress` (nothing when `quiet`).
    pub fn new(options: CacheOptions, progress: Arc<dyn Progress>, quiet: bool) -> Session {
        Session {
            options,
            quiet,
            progress,
            cache: OnceLock::new(),
            components: Mutex::new(BTreeMap::new()),
        }
    }

    /// Where progress goes (silent when quiet).
    pub fn progress(&self) -> &dyn Progress {
        if self.quiet {
            &Silent
        } else {
            self.progress.as_ref()
        }
    }

    /// Say a warning (even when quiet).
    pub fn warn(&self, line: &str) {
        self.progress.warn(line);
    }

    /// Start a timed stage.
    pub fn stage(&self, name: impl Into<String>) -> Stage<'_> {
        let name = name.into();
        self.progress().start(&name);
        Stage {
            session: self,
            name,
            start: Instant::now(),
        }
    }

    /// The cache this run opened, if any.
    pub fn cache(&self) -> Option<&CallCache> {
        self.cache.get()
    }

    /// Component (`pool.NAME`, `backends.NAME`, `embedder`) -> (identity, its TOML table), for
    /// the recording's manifest.
    pub fn components(&self) -> BTreeMap<String, (String, toml::Table)> {
        self.components
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Note the components that call through the cache.
    pub(crate) fn note_components(&self, components: &[(String, String, toml::Table)]) {
        let mut seen = self.components.lock().unwrap_or_else(|p| p.into_inner());
        for (role, identity, table) in components {
            seen.insert(role.clone(), (identity.clone(), table.clone()));
        }
    }

    /// Open the call cache the pipeline and options ask for (once per run: later calls share
    /// it).
    pub fn open_cache(&self, p: &Pipeline, ctx: &Context) -> Result<CallCache> {
        if let Some(c) = self.cache.get() {
            return Ok(c.clone());
        }
        let c = self.open_cache_new(p, ctx)?;
        Ok(self.cache.get_or_init(|| c).clone())
    }

    fn open_cache_new(&self, p: &Pipeline, ctx: &Context) -> Result<CallCache> {
        let args = &self.options;
        let table: CacheTable = match &p.cache {
            Some(l) => rgd_core::pipeline::parse_table(l)?,
            None => CacheTable::default(),
        };
        if let Some(rec) = &table.recording
            && !args.live
            && args.cache.is_none()
            && args.mode.is_none()
        {
            let path = ctx.resolve(rec);
            if !path.exists() {
                bail!(
                    "{}: the recording {} does not exist; run with `--live` to compute the calls (add `--record {}` to write it)",
                    p.cache
                        .as_ref()
                        .map(|l| l.context.as_str())
                        .unwrap_or("[cache]"),
                    path.display(),
                    path.display()
                );
            }
            return crate::recording::replay(&path);
        }
        if let Some(c) = &args.cache
            && is_recording(c)
        {
            if args.mode.is_some_and(|m| m != CacheMode::ReadOnly) {
                bail!(
                    "--cache {}: a recording replays read-only; to add calls, import it into a cache file (`rgd cache import`)",
                    c.display()
                );
            }
            return crate::recording::replay(c);
        }
        let mode = args.mode.or(table.mode).unwrap_or_default();
        if mode == CacheMode::Off {
            return Ok(CallCache::off());
        }
        let path = args
            .cache
            .clone()
            .or(table.path.map(|p| ctx.resolve(&p)))
            .unwrap_or_else(default_cache_path);
        Ok(CallCache::open(&path, mode)?)
    }
}

/// A running stage of a session.
pub struct Stage<'a> {
    session: &'a Session,
    name: String,
    start: Instant,
}

impl Stage<'_> {
    /// End the stage with a note; returns the seconds it took.
    pub fn done(self, note: &str) -> f64 {
        let secs = self.start.elapsed().as_secs_f64();
        self.session.progress().done(&self.name, secs, note);
        secs
    }
}

/// `[cache]`: where model calls are remembered, or the recording a run replays.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CacheTable {
    /// The cache file (relative to the pipeline); default `$RGD_CACHE_DIR/calls.sqlite`.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// `read_write` (default), `read_only` (replay: a missing call is an error) or `off`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub mode: Option<CacheMode>,
    /// A recording (`.jsonl.gz`, relative to the pipeline) replayed read-only unless `--live`
    /// or `--cache` is given.
    #[serde(default)]
    pub recording: Option<PathBuf>,
}

/// The default cache file.
pub fn default_cache_path() -> PathBuf {
    std::env::var_os("RGD_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(rgd_assets::cache_root)
        .join("calls.sqlite")
}

/// Whether a path names a recording (`.jsonl.gz` / `.jsonl`) rather than a cache file.
pub fn is_recording(p: &Path) -> bool {
    let n = p.to_string_lossy();
    n.ends_with(".jsonl.gz") || n.ends_with(".jsonl")
}
