//! Streaming replies: the top-1 (or direct) reply as chat.completion.chunk events, with
//! fallback to the next ranked model before the first piece.

use super::*;

/// What the streaming worker sends.
pub(crate) enum Piece {
    Text(String),
    Fallback(String, String),
    Done(String),
    Failed(String),
}

/// Stream the top-1 (or direct) reply as chat.completion.chunk events; a model that fails
/// before its first piece is replaced by the next ranked one.
pub(crate) async fn stream(
    st: Arc<St>,
    chat: Chat,
    d: Decision,
    rgd: Value,
    route: HeaderValue,
) -> Response {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Piece>();
    let members: Vec<(String, Arc<dyn LlmBackend>)> =
        d.ranked.iter().map(|&i| st.members[i].clone()).collect();
    let req = chat.req.clone();
    tokio::task::spawn_blocking(move || {
        for (name, backend) in members {
            let mut sent = false;
            let r = backend.generate_stream(&req, &mut |p: &str| {
                sent = true;
                let _ = tx.send(Piece::Text(p.to_string()));
            });
            match r {
                Ok(_) => {
                    let _ = tx.send(Piece::Done(name));
                    return;
                }
                Err(e) if !sent => {
                    let _ = tx.send(Piece::Fallback(name, e.to_string()));
                }
                Err(e) => {
                    let _ = tx.send(Piece::Failed(format!("`{name}`: {e}")));
                    return;
                }
            }
        }
        let _ = tx.send(Piece::Failed("every ranked model failed".into()));
    });
    let id = completion_id();
    let created = now();
    let model = chat.model.clone();
    let chunk = move |delta: Value, finish: Option<&str>, extra: Option<Value>| {
        let mut c = json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        });
        if let Some(x) = extra {
            c["rgd"] = x;
        }
        Ok::<_, std::convert::Infallible>(Bytes::from(format!("data: {c}\n\n")))
    };
    let routing_ms = d.routing_ms;
    let body = async_stream(move |out| async move {
        let _ = out.send(chunk(
            json!({"role": "assistant", "content": ""}),
            None,
            Some(rgd.clone()),
        ));
        let mut fallbacks = Vec::new();
        while let Some(p) = rx.recv().await {
            match p {
                Piece::Text(t) => {
                    let _ = out.send(chunk(json!({"content": t}), None, None));
                }
                Piece::Fallback(name, e) => fallbacks.push(json!({"model": name, "error": e})),
                Piece::Done(name) => {
                    let mut fin = rgd.clone();
                    fin["answered_by"] = json!(name);
                    fin["fallbacks"] = Value::Array(std::mem::take(&mut fallbacks));
                    let _ = out.send(chunk(json!({}), Some("stop"), Some(fin)));
                    break;
                }
                Piece::Failed(e) => {
                    let err = json!({"error": {"message": e, "type": "server_error", "code": "backend_failed"}, "rgd": {"fallbacks": fallbacks}});
                    let _ = out.send(Ok(Bytes::from(format!("data: {err}\n\n"))));
                    break;
                }
            }
        }
        let _ = out.send(Ok(Bytes::from("data: [DONE]\n\n")));
    });
    let mut r = Response::new(Body::from_stream(body));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    with_headers(r, route, routing_ms)
}

type Chunk = Result<Bytes, std::convert::Infallible>;

/// A stream fed by a task through a channel.
pub(crate) fn async_stream<F, Fut>(f: F) -> impl futures_util::Stream<Item = Chunk>
where
    F: FnOnce(tokio::sync::mpsc::UnboundedSender<Chunk>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(f(tx));
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) })
}
