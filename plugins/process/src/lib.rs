//! Out-of-process plugins: a router or filter served by another program — any language, e.g.
//! Python with its standard library only — over a versioned JSON-lines protocol on its
//! stdin/stdout (stderr passes through to the user).
//!
//! Protocol version 1; one JSON object per line each way:
//!
//! 1. host: `{"rgd": "hello", "protocol": 1}`;
//!    plugin: `{"protocol": 1, "components": [{"kind": "router", "type": "NAME", "doc": "..."}]}`
//! 2. host: `{"id": N, "method": "train", "params": {"type", "config", "models", "split"}}`;
//!    plugin: `{"id": N, "result": {"state": ANY}}` — the state is the trained router; the
//!    host keeps it (in the artifact), so a plugin process may be restarted at any time.
//! 3. host: `{"id": N, "method": "load", "params": {"type", "config", "state", "models"}}`;
//!    plugin: `{"id": N, "result": {"handle": ANY}}` — once per process, before scoring; then
//!    host: `{"id": N, "method": "score", "params": {"type", "handle", "queries": [{"id",
//!    "text", "embedding"}]}}`; plugin: `{"id": N, "result": {"scores": [[one per model],
//!    ...]}}`
//! 4. host: `{"id": N, "method": "filter", "params": {"type", "config", "models", "split"}}`;
//!    plugin: `{"id": N, "result": {"keep": [bool, ...], "removed": {"reason": count}}}`
//! 5. host: `{"id": N, "method": "label", "params": {"type", "config", "split"}}`;
//!    plugin: `{"id": N, "result": {"labels": [[a number in 0..1 per model], ...]}}` (one row
//!    per question; a labeler offered as `{"kind": "labeler", ...}`)
//!
//! Any reply may be `{"id": N, "error": "message"}`. A split is `{"questions": [{"id",
//! "subject", "text", "options", "answer"}], "choices": [[letter or null per model]],
//! "confidences": [[number or null]], "embeddings": [[number]], "generator_answer": [...] or
//! null}`. A process that exits, prints anything else on stdout, or does not answer within
//! `timeout_s` gives an error naming the command; the host goes on with its other routers.

use ndarray::Array2;
use rgd_core::{
    Context, Filter, FilterOutcome, Labeler, Labels, Needs, Query, Result, Router, Split,
    Supervision, TrainedRouter,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::Duration;

/// The protocol version this host speaks.
pub const PROTOCOL: u64 = 1;

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The command could not be started.
    #[error("process `{command}`: cannot start: {msg}")]
    Spawn {
        /// The command line.
        command: String,
        /// Why.
        msg: String,
    },
    /// The process broke the protocol (exit, garbage, wrong version, error reply, timeout).
    #[error("process `{command}`: {msg}")]
    Protocol {
        /// The command line.
        command: String,
        /// What happened.
        msg: String,
    },
}

rgd_core::component_error!(ProcessError, "process plugin");

/// One component a process offers (its handshake).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Offered {
    /// `router`, `filter` or `labeler`.
    pub kind: String,
    /// Its type name inside the process.
    #[serde(rename = "type")]
    pub type_name: String,
    /// One-line documentation.
    #[serde(default)]
    pub doc: String,
}

/// A running plugin process after the handshake.
pub struct Connection {
    command: Vec<String>,
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<std::io::Result<String>>,
    timeout: Duration,
    next_id: u64,
    /// What the process offers.
    pub offered: Vec<Offered>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("command", &self.command)
            .finish()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // closing stdin asks a well-behaved plugin to exit; kill in case it does not
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Longest `timeout_s` accepted: one day (a reply slower than that is a hang).
pub const MAX_TIMEOUT_S: f64 = 86_400.0;

/// `timeout_s` is a finite number of seconds in (0, [`MAX_TIMEOUT_S`]].
fn check_timeout(timeout_s: f64) -> std::result::Result<(), String> {
    if timeout_s > 0.0 && timeout_s <= MAX_TIMEOUT_S {
        Ok(())
    } else {
        Err(format!(
            "`timeout_s` must be a number of seconds in (0, {MAX_TIMEOUT_S}], got {timeout_s}"
        ))
    }
}

impl Connection {
    /// Start `command` and shake hands.
    pub fn start(command: &[String], timeout_s: f64) -> std::result::Result<Self, ProcessError> {
        let cmdline = command.join(" ");
        let Some((prog, args)) = command.split_first() else {
            return Err(ProcessError::Spawn {
                command: cmdline,
                msg: "`command` is empty".into(),
            });
        };
        check_timeout(timeout_s).map_err(|msg| ProcessError::Spawn {
            command: cmdline.clone(),
            msg,
        })?;
        let mut child = Command::new(prog)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| ProcessError::Spawn {
                command: cmdline.clone(),
                msg: e.to_string(),
            })?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = channel();
        // a reader thread, so a reply can be waited for with a timeout
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut c = Connection {
            command: command.to_vec(),
            child,
            stdin,
            lines: rx,
            timeout: Duration::from_secs_f64(timeout_s.max(0.001)),
            next_id: 1,
            offered: Vec::new(),
        };
        c.send(&json!({"rgd": "hello", "protocol": PROTOCOL}))?;
        let hello = c.receive()?;
        let version = hello.get("protocol").and_then(Value::as_u64);
        if version != Some(PROTOCOL) {
            return Err(c.err(format!(
                "speaks protocol {}, this rgd speaks {PROTOCOL} (handshake: {hello})",
                version.map(|v| v.to_string()).unwrap_or("(none)".into())
            )));
        }
        c.offered = serde_json::from_value(hello.get("components").cloned().unwrap_or(json!([])))
            .map_err(|e| c.err(format!("handshake `components`: {e}")))?;
        Ok(c)
    }

    fn err(&self, msg: String) -> ProcessError {
        ProcessError::Protocol {
            command: self.command.join(" "),
            msg,
        }
    }

    fn send(&mut self, v: &Value) -> std::result::Result<(), ProcessError> {
        let mut line = serde_json::to_string(v).expect("JSON values serialize");
        line.push('\n');
        self.stdin
            .write_all(line.as_bytes())
            .and_then(|_| self.stdin.flush())
            .map_err(|e| self.err(format!("cannot write to it (did it exit?): {e}")))
    }

    fn receive(&mut self) -> std::result::Result<Value, ProcessError> {
        match self.lines.recv_timeout(self.timeout) {
            Ok(Ok(line)) => serde_json::from_str(&line).map_err(|_| {
                let shown: String = line.chars().take(200).collect();
                self.err(format!(
                    "printed non-protocol output on stdout: `{shown}` (log to stderr instead)"
                ))
            }),
            Ok(Err(e)) => Err(self.err(format!("reading its output: {e}"))),
            Err(RecvTimeoutError::Timeout) => {
                let _ = self.child.kill();
                Err(self.err(format!(
                    "no answer within {:.1} s (timeout_s); killed",
                    self.timeout.as_secs_f64()
                )))
            }
            Err(RecvTimeoutError::Disconnected) => {
                let status = self
                    .child
                    .wait()
                    .map(|s| s.to_string())
                    .unwrap_or_else(|e| e.to_string());
                Err(self.err(format!("exited ({status}) before answering")))
            }
        }
    }

    /// Call `method` and wait for its result.
    pub fn call(
        &mut self,
        method: &str,
        params: Value,
    ) -> std::result::Result<Value, ProcessError> {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({"id": id, "method": method, "params": params}))?;
        let reply = self.receive()?;
        if reply.get("id").and_then(Value::as_u64) != Some(id) {
            return Err(self.err(format!("answered `{reply}` to request {id}")));
        }
        if let Some(e) = reply.get("error") {
            return Err(self.err(format!(
                "{method} failed: {}",
                e.as_str()
                    .map(String::from)
                    .unwrap_or_else(|| e.to_string())
            )));
        }
        reply
            .get("result")
            .cloned()
            .ok_or_else(|| self.err(format!("reply to {method} has no `result`: {reply}")))
    }

    /// The offered component of this kind named `name` (or the only one of that kind).
    pub fn pick(
        &self,
        kind: &str,
        name: Option<&str>,
    ) -> std::result::Result<String, ProcessError> {
        let of_kind: Vec<&Offered> = self.offered.iter().filter(|o| o.kind == kind).collect();
        match name {
            Some(n) if of_kind.iter().any(|o| o.type_name == n) => Ok(n.to_string()),
            None if of_kind.len() == 1 => Ok(of_kind[0].type_name.clone()),
            _ => Err(self.err(format!(
                "offers no {kind} {}; it offers: {}",
                name.map(|n| format!("`{n}`"))
                    .unwrap_or("(name one with `component`)".into()),
                of_kind
                    .iter()
                    .map(|o| o.type_name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }
}

/// A split as the protocol sends it.
pub fn split_json(split: &Split) -> Value {
    let opt = |x: f64| if x.is_finite() { json!(x) } else { Value::Null };
    json!({
        "questions": split.questions.iter().map(|q| json!({
            "id": q.id, "subject": q.subject, "text": q.text, "options": q.options,
            "answer": q.answer.map(|a| a.to_string()),
        })).collect::<Vec<_>>(),
        "choices": split.responses.choice.rows().into_iter()
            .map(|r| r.iter().map(|c| c.map(|l| l.to_string())).collect::<Vec<_>>())
            .collect::<Vec<_>>(),
        "confidences": split.responses.confidence.rows().into_iter()
            .map(|r| r.iter().map(|x| opt(*x)).collect::<Vec<_>>())
            .collect::<Vec<_>>(),
        "embeddings": split.embeddings.rows().into_iter()
            .map(|r| r.to_vec()).collect::<Vec<_>>(),
        "generator_answer": split.generator_answer.as_ref()
            .map(|g| g.iter().map(|c| c.map(|l| l.to_string())).collect::<Vec<_>>()),
    })
}

fn default_timeout() -> f64 {
    60.0
}

/// A router served by another process (`type = "process"`, `command = [...]`): it trains and
/// scores through the JSON-lines protocol; other keys of `config` are passed to it.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProcessRouter {
    /// The command line (program and arguments), e.g. `["python3", "router.py"]`.
    pub command: Vec<String>,
    /// The router's type name inside the process (default: its only router).
    #[serde(default)]
    pub component: Option<String>,
    /// Settings passed to the router as `config`.
    #[serde(default)]
    pub config: BTreeMap<String, Value>,
    /// Seconds to wait for each answer.
    #[serde(default = "default_timeout")]
    pub timeout_s: f64,
    /// What it learns from, for the report: `query_only`, `query_answer` or `none`.
    #[serde(default = "default_supervision")]
    pub supervision: Supervision,
}

fn default_supervision() -> Supervision {
    Supervision::QueryOnly
}

/// A component's `command` names a program and its `timeout_s` is in range.
fn check_command(command: &[String], timeout_s: f64) -> Result<()> {
    if command.is_empty() {
        return Err(rgd_core::Error::Data("`command` is empty".into()));
    }
    check_timeout(timeout_s).map_err(rgd_core::Error::Data)
}

/// Rows of a reply (already checked to be `n` rows of `m`) as a `[row, column]` array.
fn to_array(rows: &[Vec<f64>], n: usize, m: usize) -> Array2<f64> {
    Array2::from_shape_fn((n, m), |(i, j)| rows[i][j])
}

impl Router for ProcessRouter {
    fn check(&self) -> Result<()> {
        check_command(&self.command, self.timeout_s)
    }
    fn train(
        &self,
        train: &Split,
        models: &[String],
        _ctx: &Context,
    ) -> Result<Box<dyn TrainedRouter>> {
        let mut c = Connection::start(&self.command, self.timeout_s)?;
        let component = c.pick("router", self.component.as_deref())?;
        let r = c.call(
            "train",
            json!({"type": component, "config": self.config, "models": models, "split": split_json(train)}),
        )?;
        Ok(Box::new(TrainedProcess {
            command: self.command.clone(),
            component,
            config: self.config.clone(),
            models: models.to_vec(),
            state: r.get("state").cloned().unwrap_or(Value::Null),
            timeout_s: self.timeout_s,
            conn: Mutex::new(None),
        }))
    }
    fn supervision(&self) -> Supervision {
        self.supervision
    }
}

/// A router trained by a process: its state, loaded into the process once per connection
/// (the process is restarted when needed, e.g. after loading the artifact).
#[derive(Debug, Serialize, Deserialize)]
pub struct TrainedProcess {
    command: Vec<String>,
    component: String,
    config: BTreeMap<String, Value>,
    models: Vec<String>,
    state: Value,
    timeout_s: f64,
    /// The running process and the handle of the loaded state.
    #[serde(skip)]
    conn: Mutex<Option<(Connection, Value)>>,
}

impl TrainedProcess {
    fn score_queries(&self, queries: Vec<Value>) -> Result<Vec<Vec<f64>>> {
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            let mut c = Connection::start(&self.command, self.timeout_s)?;
            let r = c.call(
                "load",
                json!({"type": self.component, "config": self.config, "state": self.state,
                       "models": self.models}),
            )?;
            let handle = r.get("handle").cloned().unwrap_or(Value::Null);
            *guard = Some((c, handle));
        }
        let (c, handle) = guard.as_mut().expect("connection just set");
        let n = queries.len();
        let result = c.call(
            "score",
            json!({"type": self.component, "handle": handle, "queries": queries}),
        );
        let r = match result {
            Ok(r) => r,
            Err(e) => {
                // a broken process is restarted on the next call
                *guard = None;
                return Err(e.into());
            }
        };
        let scores: Vec<Vec<f64>> =
            serde_json::from_value(r.get("scores").cloned().unwrap_or(Value::Null))
                .map_err(|e| c.err(format!("score reply `scores`: {e}")))?;
        if scores.len() != n || scores.iter().any(|s| s.len() != self.models.len()) {
            return Err(c
                .err(format!(
                    "score reply has {} rows for {n} queries (each must have {} scores)",
                    scores.len(),
                    self.models.len()
                ))
                .into());
        }
        Ok(scores)
    }
}

fn query_json(id: &str, text: &str, embedding: &[f32]) -> Value {
    json!({"id": id, "text": text, "embedding": embedding})
}

#[typetag::serde(name = "process")]
impl TrainedRouter for TrainedProcess {
    fn models(&self) -> &[String] {
        &self.models
    }
    fn score(&self, query: &Query<'_>, out: &mut [f64]) -> Result<()> {
        let e = query.embedding.to_vec();
        let s = self.score_queries(vec![query_json(query.id, query.text, &e)])?;
        out.copy_from_slice(&s[0]);
        Ok(())
    }
    fn score_split(&self, split: &Split) -> Result<Array2<f64>> {
        let queries = split
            .questions
            .iter()
            .enumerate()
            .map(|(i, q)| query_json(&q.id, &q.text, &split.embedding(i).to_vec()))
            .collect();
        let s = self.score_queries(queries)?;
        Ok(to_array(&s, split.len(), self.models.len()))
    }
}

/// A filter served by another process (`type = "process"` under `[filters.NAME]`).
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProcessFilter {
    /// The command line.
    pub command: Vec<String>,
    /// The filter's type name inside the process (default: its only filter).
    #[serde(default)]
    pub component: Option<String>,
    /// Settings passed to the filter as `config`.
    #[serde(default)]
    pub config: BTreeMap<String, Value>,
    /// Seconds to wait for the answer.
    #[serde(default = "default_timeout")]
    pub timeout_s: f64,
}

impl Filter for ProcessFilter {
    fn filter(&self, split: &Split, models: &[String], _ctx: &Context) -> Result<FilterOutcome> {
        let mut c = Connection::start(&self.command, self.timeout_s)?;
        let component = c.pick("filter", self.component.as_deref())?;
        let r = c.call(
            "filter",
            json!({"type": component, "config": self.config, "models": models, "split": split_json(split)}),
        )?;
        let keep: Vec<bool> = serde_json::from_value(r.get("keep").cloned().unwrap_or(Value::Null))
            .map_err(|e| c.err(format!("filter reply `keep`: {e}")))?;
        if keep.len() != split.len() {
            return Err(c
                .err(format!(
                    "filter reply has {} decisions for {} questions",
                    keep.len(),
                    split.len()
                ))
                .into());
        }
        let removed = serde_json::from_value(r.get("removed").cloned().unwrap_or(json!({})))
            .map_err(|e| c.err(format!("filter reply `removed`: {e}")))?;
        Ok(FilterOutcome { keep, removed })
    }
}

/// A labeler served by another process (`type = "process"` under `[labelers.NAME]`).
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProcessLabeler {
    /// The command line.
    pub command: Vec<String>,
    /// The labeler's type name inside the process (default: its only labeler).
    #[serde(default)]
    pub component: Option<String>,
    /// Settings passed to the labeler as `config`.
    #[serde(default)]
    pub config: BTreeMap<String, Value>,
    /// Seconds to wait for the answer.
    #[serde(default = "default_timeout")]
    pub timeout_s: f64,
    /// Whether it reads the answer key (then routers learning from it are query-answer, and
    /// data without a key is refused before training).
    #[serde(default)]
    pub reads_key: bool,
}

impl Labeler for ProcessLabeler {
    fn label(&self, split: &Split) -> Result<Labels> {
        let mut c = Connection::start(&self.command, self.timeout_s)?;
        let component = c.pick("labeler", self.component.as_deref())?;
        let r = c.call(
            "label",
            json!({"type": component, "config": self.config, "split": split_json(split)}),
        )?;
        let rows: Vec<Vec<f64>> =
            serde_json::from_value(r.get("labels").cloned().unwrap_or(Value::Null))
                .map_err(|e| c.err(format!("label reply `labels`: {e}")))?;
        let m = split.n_models();
        if rows.len() != split.len() || rows.iter().any(|r| r.len() != m) {
            return Err(c
                .err(format!(
                    "label reply has {} rows for {} questions (each must have {m} labels)",
                    rows.len(),
                    split.len()
                ))
                .into());
        }
        Ok(Labels {
            kind: component,
            values: to_array(&rows, split.len(), m),
        })
    }
    fn needs(&self) -> Needs {
        Needs {
            key: self.reads_key,
            letters: !self.reads_key,
        }
    }
    fn check(&self) -> Result<()> {
        check_command(&self.command, self.timeout_s)
    }
}

/// Start `command` and return what it offers (for `rgd plugins`).
pub fn offered(
    command: &[String],
    timeout_s: f64,
) -> std::result::Result<Vec<Offered>, ProcessError> {
    Ok(Connection::start(command, timeout_s)?.offered.clone())
}

rgd_core::register!(router, "process", ProcessRouter);
rgd_core::register!(filter, "process", ProcessFilter);
rgd_core::register!(labeler, "process", ProcessLabeler);
