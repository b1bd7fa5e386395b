//! The connection layer of `rgd serve`: hyper's HTTP/1 server under limits that shed idle,
//! slow and surplus clients, so a few hundred idle or half-sent connections cannot starve
//! the normal ones.
//!
//! - **Headers**: a request's headers must arrive within `header_timeout` (hyper's own
//!   header-read timer), else the connection is closed.
//! - **Body**: the handler reads a body for at most `body_timeout` (408 after it), and refuses
//!   a declared `Content-Length` over the limit before reading (413).
//! - **Idle**: a connection with no request in progress and no byte read or written for
//!   `idle_timeout` is closed (keep-alive clients reconnect).
//! - **Connections**: at most `max_connections` at once; one more gets a `503` JSON error and
//!   is closed (if it sends no request within a second, closed without one). The process's
//!   open-file limit is raised to its hard limit at start, and the cap lowered to what that
//!   limit leaves, so that the cap, not the kernel, is what refuses.
//!
//! axum's own `serve` has none of these limits, which is why this loop exists; each piece
//! (HTTP parsing, the timer, the service) is hyper's or axum's.

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tower::ServiceExt;

/// Connection limits (the defaults are `rgd serve`'s).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    /// Longest wait for a request's headers (10 s: a real client sends them at once).
    pub header_timeout: Duration,
    /// Longest wait for a request's body (30 s: 1 MiB at a slow 35 KB/s).
    pub body_timeout: Duration,
    /// Idle keep-alive connections are closed after this (60 s, as common proxies do).
    pub idle_timeout: Duration,
    /// Most connections at once (1,024); one more is answered 503 and closed.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
        }
    }
}

/// When a connection last moved a byte, and how many requests it has in progress.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }
    fn touch(&self) {
        self.last_ms
            .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
    /// How long the connection has been idle (None while a request is in progress).
    fn idle_for(&self) -> Option<Duration> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        Some(self.start.elapsed().saturating_sub(last))
    }
}

/// A socket that records its activity.
struct Watched<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Resolves once the connection has been idle for `idle`.
async fn idle_watch(activity: Arc<Activity>, idle: Duration) {
    loop {
        match activity.idle_for() {
            Some(d) if d >= idle => return,
            Some(d) => tokio::time::sleep(idle - d).await,
            None => tokio::time::sleep(idle).await,
        }
    }
}

fn http1(limits: &Limits) -> hyper::server::conn::http1::Builder {
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    b
}

/// Serve one accepted connection until it ends, goes idle, or the server shuts down.
async fn serve_connection(
    stream: tokio::net::TcpStream,
    app: Router,
    limits: Limits,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let act = activity.clone();
    let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let app = app.clone();
        let act = act.clone();
        act.in_flight.fetch_add(1, Ordering::Relaxed);
        async move {
            let r = app.oneshot(req.map(axum::body::Body::new)).await;
            act.touch();
            act.in_flight.fetch_sub(1, Ordering::Relaxed);
            r
        }
    });
    let conn = http1(&limits).serve_connection(io, svc);
    let mut conn = std::pin::pin!(conn);
    let mut idle = std::pin::pin!(idle_watch(activity, limits.idle_timeout));
    let mut closing = false;
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            // dropping the connection closes the socket
            _ = idle.as_mut() => return,
            _ = shutdown.changed(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Answer one request on a connection over the cap with 503, then close it.
async fn refuse_connection(stream: tokio::net::TcpStream, limits: Limits) {
    let max = limits.max_connections;
    let svc = hyper::service::service_fn(move |_req: hyper::Request<Incoming>| async move {
        let body = serde_json::json!({"error": {
            "message": format!("the server is at its limit of {max} connections; retry shortly"),
            "type": "server_error",
            "code": "too_many_connections",
        }})
        .to_string();
        hyper::Response::builder()
            .status(503)
            .header("content-type", "application/json")
            .header("retry-after", "1")
            .body(axum::body::Body::from(body))
    });
    let mut b = http1(&limits);
    b.keep_alive(false);
    let conn = b.serve_connection(TokioIo::new(stream), svc);
    // a client over the cap that sends no request within a second is closed: surplus idle
    // sockets must not hold the files the cap is protecting
    let wait = limits.header_timeout.min(Duration::from_secs(1));
    let _ = tokio::time::timeout(wait + Duration::from_millis(100), conn).await;
}

/// Open files the server keeps for itself beside its connections: the runtime's, the model
/// and embedder files, the backends' own HTTP connections.
pub const RESERVED_FILES: u64 = 64;

impl Limits {
    /// These limits as the process can keep them: the soft open-file limit raised to the hard
    /// one (every connection is a file), and `max_connections` lowered to what that limit leaves
    /// after [`RESERVED_FILES`], so that the cap — a prompt 503 — refuses, not the kernel
    /// (whose refused `accept` leaves clients waiting in the backlog). Returns the limits and
    /// the open-file limit when it lowered the cap.
    pub fn fitted(self) -> (Limits, Option<u64>) {
        let soft = rlimit::increase_nofile_limit(u64::MAX)
            .ok()
            .or_else(|| rlimit::Resource::NOFILE.get_soft().ok());
        match soft {
            Some(files) if files.saturating_sub(RESERVED_FILES) < self.max_connections as u64 => {
                let max = files.saturating_sub(RESERVED_FILES).max(1) as usize;
                (
                    Limits {
                        max_connections: max,
                        ..self
                    },
                    Some(files),
                )
            }
            _ => (self, None),
        }
    }
}

/// Serve `app` on `listener` under `limits` until `shutdown` resolves; then stop accepting,
/// let the requests in progress finish (at most 30 s), and return.
pub async fn serve_with_limits(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let (limits, _) = limits.fitted();
    let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            _ = shutdown.as_mut() => break,
            r = listener.accept() => match r {
                Ok(s) => s,
                // e.g. out of file descriptors: wait for connections to close
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        match permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let app = app.clone();
                let stop = stop_rx.clone();
                tokio::spawn(async move {
                    serve_connection(stream, app, limits, stop).await;
                    drop(permit);
                });
            }
            Err(_) => {
                tokio::spawn(refuse_connection(stream, limits));
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let all = limits.max_connections.min(u32::MAX as usize) as u32;
    let _ = tokio::time::timeout(Duration::from_secs(30), permits.acquire_many(all)).await;
    Ok(())
}
