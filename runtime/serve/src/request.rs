//! What a request asks: authorization, the model ids served, and a chat request parsed and
//! checked (target, messages, parameters).

use super::*;

pub(crate) fn authorized(st: &St, headers: &HeaderMap) -> Result<(), Rejection> {
    let Some(token) = &st.token else {
        return Ok(());
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(g) if g.trim() == token => Ok(()),
        Some(_) => Err(Box::new(error(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "invalid_api_key",
            "wrong bearer token",
        ))),
        None => Err(Box::new(error(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "missing_api_key",
            "this server needs `Authorization: Bearer TOKEN`",
        ))),
    }
}

pub(crate) async fn health(State(st): State<Arc<St>>) -> Response {
    axum::Json(json!({"status": "ok", "router": st.name, "models": st.router.models()}))
        .into_response()
}

pub(crate) fn model_ids(st: &St) -> Vec<String> {
    let mut ids = vec![format!("rgd:{}", st.name), format!("rgd:{}:top3", st.name)];
    ids.extend(st.members.iter().map(|m| m.0.clone()));
    ids
}

/// The model list is open (like `/health`): it names what may be asked for, nothing more.
pub(crate) async fn models(State(st): State<Arc<St>>) -> Response {
    let data: Vec<Value> = model_ids(&st)
        .into_iter()
        .map(|id| json!({"id": id, "object": "model", "created": 0, "owned_by": "rgd"}))
        .collect();
    axum::Json(json!({"object": "list", "data": data})).into_response()
}

/// What the request asks for.
pub(crate) enum Target {
    /// Routed: top-1 (`votes = 1`) or the top-3 vote.
    Route { top3: bool },
    /// A pool model by name (its index in `members`).
    Direct(usize),
}

/// A parsed chat request.
pub(crate) struct Chat {
    pub(crate) model: String,
    pub(crate) target: Target,
    pub(crate) req: GenerateRequest,
    pub(crate) query: String,
    pub(crate) stream: bool,
}

pub(crate) fn text_of(content: &Value) -> Option<String> {
    match content {
        Value::String(s) => Some(s.clone()),
        // content parts: the text ones, joined
        Value::Array(parts) => Some(
            parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        Value::Null => Some(String::new()),
        _ => None,
    }
}

pub(crate) fn parse_chat(st: &St, v: &Value) -> Result<Chat, Rejection> {
    let Some(obj) = v.as_object() else {
        return Err(Box::new(bad_request("the body must be a JSON object")));
    };
    let model = match obj.get("model") {
        Some(Value::String(m)) => m.clone(),
        Some(_) => return Err(Box::new(bad_request("`model` must be a string"))),
        None => {
            return Err(Box::new(bad_request(format!(
                "`model` is required (one of {})",
                model_ids(st).join(", ")
            ))));
        }
    };
    let target = if let Some(rest) = model.strip_prefix("rgd:") {
        let (name, top3) = match rest.strip_suffix(":top3") {
            Some(n) => (n, true),
            None => (rest, false),
        };
        if name != st.name {
            return Err(Box::new(unknown_model(st, &model)));
        }
        Target::Route { top3 }
    } else {
        match st.members.iter().position(|m| m.0 == model) {
            Some(i) => Target::Direct(i),
            None => return Err(Box::new(unknown_model(st, &model))),
        }
    };
    let msgs = match obj.get("messages") {
        Some(Value::Array(a)) if !a.is_empty() => a,
        Some(Value::Array(_)) => return Err(Box::new(bad_request("`messages` is empty"))),
        Some(_) => return Err(Box::new(bad_request("`messages` must be an array"))),
        None => return Err(Box::new(bad_request("`messages` is required"))),
    };
    let mut messages = Vec::with_capacity(msgs.len());
    for (i, m) in msgs.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str);
        let content = m.get("content").and_then(text_of);
        match (role, content) {
            (Some(r), Some(c)) => messages.push(Message {
                role: r.to_string(),
                content: c,
            }),
            _ => {
                return Err(Box::new(bad_request(format!(
                    "`messages[{i}]` needs a string `role` and a `content`"
                ))));
            }
        }
    }
    let Some(query) = messages
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .map(|m| m.content.clone())
    else {
        return Err(Box::new(bad_request(
            "`messages` has no user message to route",
        )));
    };
    let num = |k: &str, default: f64, lo: f64, hi: f64| -> Result<f64, Rejection> {
        match obj.get(k) {
            None | Some(Value::Null) => Ok(default),
            Some(x) => match x.as_f64() {
                Some(f) if (lo..=hi).contains(&f) => Ok(f),
                _ => Err(Box::new(bad_request(format!(
                    "`{k}` must be a number in [{lo}, {hi}]"
                )))),
            },
        }
    };
    let max_tokens = match obj.get("max_completion_tokens").or(obj.get("max_tokens")) {
        None | Some(Value::Null) => 512,
        Some(x) => match x.as_u64() {
            Some(n) if (1..=32_768).contains(&n) => n as usize,
            _ => {
                return Err(Box::new(bad_request(
                    "`max_tokens` must be an integer from 1 to 32768",
                )));
            }
        },
    };
    let req = GenerateRequest {
        messages,
        temperature: num("temperature", 1.0, 0.0, 2.0)?,
        top_p: num("top_p", 1.0, 0.0, 1.0)?,
        max_tokens,
        seed: num("seed", 0.0, 0.0, u64::MAX as f64)? as u64,
        assistant_prefix: String::new(),
    };
    let stream = match obj.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(Box::new(bad_request(format!(
                "`stream` must be true or false, got {other}"
            ))));
        }
    };
    if stream && matches!(target, Target::Route { top3: true }) {
        return Err(Box::new(bad_request(
            "streaming is for top-1 routes and pool models; the top-3 vote needs every reply first",
        )));
    }
    Ok(Chat {
        model,
        target,
        req,
        query,
        stream,
    })
}

pub(crate) fn unknown_model(st: &St, model: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        "model_not_found",
        format!(
            "the model `{model}` does not exist here; models: {}",
            model_ids(st).join(", ")
        ),
    )
}
