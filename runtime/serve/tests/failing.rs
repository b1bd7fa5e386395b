//! A request that makes the router or the embedder fail — an error, a panic, a NaN score, a
//! wrong number of rows — is a 500 whose message names what failed; the server goes on
//! answering the next request.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use ndarray::Array2;
use rgd_core::{
    ChoiceScores, Embedder, GenerateRequest, Generation, LlmBackend, Query, ScoreRequest,
    TrainedRouter,
};
use rgd_serve::{Limits, Served};
use std::sync::Arc;
use tower::ServiceExt;

/// Scores by the query text: `panic` panics, `error` fails, `nan` gives a NaN, else `b` wins.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Moody {
    models: Vec<String>,
}

#[typetag::serde(name = "moody")]
impl TrainedRouter for Moody {
    fn models(&self) -> &[String] {
        &self.models
    }
    fn score(&self, query: &Query<'_>, out: &mut [f64]) -> rgd_core::Result<()> {
        match query.text {
            t if t.contains("panic") => panic!("a router bug on {t:?}"),
            t if t.contains("error") => Err(rgd_core::Error::Data("cannot score this".into())),
            t if t.contains("nan") => {
                out.copy_from_slice(&[0.5, f64::NAN]);
                Ok(())
            }
            _ => {
                out.copy_from_slice(&[0.1, 0.9]);
                Ok(())
            }
        }
    }
}

/// Embeds to one dimension; `crash` panics, `rows` returns no row at all.
#[derive(Debug)]
struct Flaky;

impl Embedder for Flaky {
    fn identity(&self) -> String {
        "flaky".into()
    }
    fn embed(&self, texts: &[&str]) -> rgd_core::Result<Array2<f32>> {
        if texts.iter().any(|t| t.contains("crash")) {
            panic!("an embedder bug");
        }
        if texts.iter().any(|t| t.contains("rows")) {
            return Ok(Array2::zeros((0, 1)));
        }
        Ok(Array2::ones((texts.len(), 1)))
    }
}

#[derive(Debug)]
struct Echo(&'static str);

impl LlmBackend for Echo {
    fn identity(&self) -> String {
        self.0.into()
    }
    fn score_choices(&self, _: &ScoreRequest) -> rgd_core::Result<ChoiceScores> {
        Err(rgd_core::Error::Data("not used".into()))
    }
    fn generate(&self, _: &GenerateRequest) -> rgd_core::Result<Generation> {
        Ok(Generation {
            text: format!("{} answers", self.0),
            mean_logprob: -0.1,
            n_tokens: 2,
            seconds: 0.0,
        })
    }
}

async fn ask(app: &axum::Router, text: &str) -> (StatusCode, String) {
    let body = serde_json::json!({
        "model": "rgd:moody",
        "messages": [{"role": "user", "content": text}],
    });
    let req = Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
async fn a_failing_request_is_a_500_naming_the_failure_and_the_server_keeps_serving() {
    let app = rgd_serve::app(Served {
        name: "moody".into(),
        router: Box::new(Moody {
            models: vec!["a".into(), "b".into()],
        }),
        embedder: Box::new(Flaky),
        members: vec![
            ("a".into(), Arc::new(Echo("a")) as Arc<dyn LlmBackend>),
            ("b".into(), Arc::new(Echo("b"))),
        ],
        token: None,
        max_body_bytes: 1 << 20,
        limits: Limits::default(),
    })
    .unwrap();
    let (status, body) = ask(&app, "What is 2 + 2?").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("b answers"), "{body}");
    for (query, says) in [
        (
            "panic now",
            "router `moody`: it panicked on this query: a router bug",
        ),
        ("an error please", "router `moody`: cannot score this"),
        ("nan", "its score of `b` is NaN"),
        ("crash it", "the embedder panicked: an embedder bug"),
        ("rows", "the embedder returned 0 rows for 1 queries"),
    ] {
        let (status, body) = ask(&app, query).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{query}: {body}");
        assert!(body.contains(says), "{query}: {body}");
        // and the next request is answered
        let (status, body) = ask(&app, "What is 3 + 3?").await;
        assert_eq!(status, StatusCode::OK, "after {query}: {body}");
    }
}
