//! `rgd serve`: load a trained router artifact and its embedder, build the pool from a
//! pipeline's `[pool]`, and serve them over the OpenAI HTTP API (see `rgd-serve`).

use anyhow::{Context as _, Result};
use clap::Args;
use rgd_core::{LlmBackend, Pipeline, Registry};
use std::path::PathBuf;
use std::sync::Arc;

/// `rgd serve` arguments.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// A trained router artifact (`OUT/routers/NAME.json` from `rgd run` or `rgd train`); its
    /// embedder is `embedder.toml` next to it.
    pub artifact: PathBuf,
    /// The pipeline whose `[pool.NAME]` tables are the models to call (usually the one the
    /// router was trained with, or the same models pointed at other servers).
    #[arg(long)]
    pub backends: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Environment variable holding a bearer token that requests must carry (none: open).
    #[arg(long, value_name = "VAR")]
    pub token_env: Option<String>,
    /// Largest request body, in KiB (1 to 1048576, i.e. 1 GiB).
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    pub max_body_kib: u64,
    /// Seconds a client has to send a request's headers.
    #[arg(long, default_value_t = 10.0, value_parser = seconds)]
    pub header_timeout_s: f64,
    /// Seconds a client has to send a request's body (408 after).
    #[arg(long, default_value_t = 30.0, value_parser = seconds)]
    pub body_timeout_s: f64,
    /// Seconds after which a connection with no request in progress and no traffic is closed.
    #[arg(long, default_value_t = 60.0, value_parser = seconds)]
    pub idle_timeout_s: f64,
    /// Most connections at once; one more is answered 503 and closed.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub max_connections: u64,
    /// Name served as `rgd:NAME` (default: the artifact's file name without `.json`).
    #[arg(long)]
    pub name: Option<String>,
    /// Embed queries at this MiniLM precision instead of the one the router was trained with
    /// (`int8`: ~2.4x the throughput; a router trained on f32 vectors keeps its picks on most
    /// queries, BENCHMARKS.md).
    #[arg(long, value_parser = ["f32", "int8"])]
    pub precision: Option<String>,
}

/// A number of seconds from 0.001 to one day.
fn seconds(v: &str) -> std::result::Result<f64, String> {
    let s: f64 = v.parse().map_err(|e| format!("{e}"))?;
    if (0.001..=86_400.0).contains(&s) {
        Ok(s)
    } else {
        Err(format!(
            "{s} is not a number of seconds from 0.001 to 86400"
        ))
    }
}

/// The connection limits the arguments ask for.
fn limits(a: &ServeArgs) -> rgd_serve::Limits {
    rgd_serve::Limits {
        header_timeout: std::time::Duration::from_secs_f64(a.header_timeout_s),
        body_timeout: std::time::Duration::from_secs_f64(a.body_timeout_s),
        idle_timeout: std::time::Duration::from_secs_f64(a.idle_timeout_s),
        max_connections: a.max_connections as usize,
    }
}

/// Run the server until the process is stopped.
pub fn serve(registry: &Registry, a: &ServeArgs, quiet: bool) -> Result<()> {
    let (router, embedder) = rgd_experiment::artifact::load_with_embedder(
        registry,
        &a.artifact,
        a.precision.as_deref(),
    )?;
    let p = Pipeline::from_file(&a.backends)?;
    let registry = rgd_experiment::resolve::with_plugins(registry, &p)?;
    // serving is live: each request is a new call
    let members = rgd_experiment::data::pool_members(&registry, &p, &rgd_cache::CallCache::off())?;
    let members: Vec<(String, Arc<dyn LlmBackend>)> = members
        .into_iter()
        .map(|m| (m.name, Arc::from(m.backend)))
        .collect();
    let token = match &a.token_env {
        None => None,
        Some(var) => Some(
            std::env::var(var)
                .ok()
                .filter(|t| !t.trim().is_empty())
                .with_context(|| {
                    format!("--token-env: the environment variable `{var}` is not set")
                })?
                .trim()
                .to_string(),
        ),
    };
    let name = a.name.clone().unwrap_or_else(|| {
        a.artifact
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "router".into())
    });
    let models = router.models().to_vec();
    let app = rgd_serve::app(rgd_serve::Served {
        name: name.clone(),
        router,
        embedder,
        members,
        token,
        max_body_bytes: (a.max_body_kib * 1024) as usize,
        limits: limits(a),
    })?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the server runtime")?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(&a.listen)
            .await
            .with_context(|| format!("--listen {}: cannot bind", a.listen))?;
        let addr = listener.local_addr()?;
        let (fitted, files) = limits(a).fitted();
        if let Some(files) = files {
            eprintln!(
                "note: at most {} connections at once, not {}: the open-file limit is {files} (`ulimit -n`), {} of them kept for the server itself",
                fitted.max_connections,
                a.max_connections,
                rgd_serve::conn::RESERVED_FILES
            );
        }
        if !quiet {
            eprintln!(
                "serving rgd:{name} and rgd:{name}:top3 over {} on http://{addr}/v1",
                models.join(", ")
            );
        }
        // the address on stdout, for scripts and tests that listen on port 0
        println!("listening on http://{addr}");
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        rgd_serve::serve_until_ctrl_c(listener, app, limits(a)).await?;
        Ok(())
    })
}
