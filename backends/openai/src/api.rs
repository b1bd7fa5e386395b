//! The OpenAI API calls on top of the client: request bodies (chat or completions, reply
//! prefixes), letter scoring from top log-probabilities, generation (whole or streamed) and
//! embeddings.

use super::client::{Client, abridge};
use super::{Api, OpenAiError, Prefill};
use rgd_core::{ChoiceScores, GenerateRequest, Generation, ScoreRequest};
use serde_json::{Value, json};

impl Client {
    /// The body of a chat or completions request.
    fn body(&self, messages: &[rgd_core::Message], prefix: &str, params: Value) -> (String, Value) {
        let mut body = params;
        body["model"] = json!(self.cfg.model);
        match self.cfg.api {
            Api::Chat => {
                let mut msgs: Vec<Value> = messages
                    .iter()
                    .map(|m| json!({"role": m.role, "content": m.content}))
                    .collect();
                if !prefix.is_empty() && self.cfg.prefill != Prefill::Off {
                    msgs.push(json!({"role": "assistant", "content": prefix}));
                    if self.cfg.prefill == Prefill::Continue {
                        body["continue_final_message"] = json!(true);
                        body["add_generation_prompt"] = json!(false);
                    }
                }
                body["messages"] = Value::Array(msgs);
                ("chat/completions".into(), body)
            }
            Api::Completions => {
                let mut prompt: String = messages
                    .iter()
                    .map(|m| format!("{}: {}\n", m.role, m.content))
                    .collect();
                prompt.push_str("assistant: ");
                if self.cfg.prefill != Prefill::Off {
                    prompt.push_str(prefix);
                }
                body["prompt"] = json!(prompt);
                ("completions".into(), body)
            }
        }
    }

    /// Score the option letters (see the crate docs).
    pub async fn score(&self, req: &ScoreRequest) -> Result<ChoiceScores, OpenAiError> {
        let mut params = json!({"max_tokens": 1, "temperature": 0.0});
        if self.cfg.logprobs {
            match self.cfg.api {
                Api::Chat => {
                    params["logprobs"] = json!(true);
                    params["top_logprobs"] = json!(self.cfg.top_logprobs);
                }
                Api::Completions => params["logprobs"] = json!(self.cfg.top_logprobs),
            }
        }
        let (path, body) = self.body(&req.messages, &req.answer_prefix, params);
        let (v, seconds) = self.post(&path, &body).await?;
        let choice = first_choice(&v)?;
        let text = reply_text(choice);
        let top: Option<Vec<(String, f64)>> = match self.cfg.api {
            Api::Chat => choice
                .pointer("/logprobs/content/0/top_logprobs")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|t| {
                            Some((
                                t.get("token")?.as_str()?.to_string(),
                                t.get("logprob")?.as_f64()?,
                            ))
                        })
                        .collect()
                }),
            Api::Completions => choice
                .pointer("/logprobs/top_logprobs/0")
                .and_then(Value::as_object)
                .map(|o| {
                    o.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_f64()?)))
                        .collect()
                }),
        };
        let n = req.n_options;
        if let Some(top) = top.filter(|t| !t.is_empty()) {
            let mut per: Vec<Vec<f64>> = vec![Vec::new(); n];
            let lowest = top.iter().map(|t| t.1).fold(f64::INFINITY, f64::min);
            for (tok, lp) in &top {
                if let Some(i) = letter_of(tok, n) {
                    per[i].push(*lp);
                }
            }
            if per.iter().any(|p| !p.is_empty()) {
                let logprobs = per
                    .iter()
                    .map(|p| if p.is_empty() { lowest } else { logsumexp(p) })
                    .collect();
                return Ok(ChoiceScores { logprobs, seconds });
            }
        } else {
            self.notice_no_logprobs();
        }
        // fallback: the reply's letter
        let letter = rgd_pool::extract::extract_answer(&text, n)
            .map(|l| l.index())
            .or_else(|| letter_of(&text, n))
            .ok_or_else(|| {
                OpenAiError::NoAnswer(format!(
                    "no option letter in the reply {:?}",
                    abridge(&text)
                ))
            })?;
        let c = self.cfg.fallback_confidence;
        let rest = ((1.0 - c) / (n.max(2) - 1) as f64).ln();
        let logprobs = (0..n)
            .map(|i| if i == letter { c.ln() } else { rest })
            .collect();
        Ok(ChoiceScores { logprobs, seconds })
    }

    fn generate_params(&self, req: &GenerateRequest) -> Value {
        let mut params = json!({
            "max_tokens": req.max_tokens,
            "temperature": req.temperature,
            "top_p": req.top_p,
            // some servers take the seed as a signed 64-bit integer
            "seed": req.seed & (i64::MAX as u64),
        });
        if self.cfg.logprobs {
            match self.cfg.api {
                // llama-cpp-python returns none without `top_logprobs`
                Api::Chat => {
                    params["logprobs"] = json!(true);
                    params["top_logprobs"] = json!(1);
                }
                Api::Completions => params["logprobs"] = json!(1),
            }
        }
        params
    }

    /// Generate a reply (see the crate docs).
    pub async fn generate(&self, req: &GenerateRequest) -> Result<Generation, OpenAiError> {
        let (path, body) = self.body(
            &req.messages,
            &req.assistant_prefix,
            self.generate_params(req),
        );
        let (v, seconds) = self.post(&path, &body).await?;
        let choice = first_choice(&v)?;
        let text = reply_text(choice);
        let lps: Option<Vec<f64>> = match self.cfg.api {
            Api::Chat => choice
                .pointer("/logprobs/content")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|t| t.get("logprob")?.as_f64())
                        .collect()
                }),
            Api::Completions => choice
                .pointer("/logprobs/token_logprobs")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_f64).collect()),
        };
        let n_tokens = v
            .pointer("/usage/completion_tokens")
            .and_then(Value::as_u64)
            .map(|n| n as usize)
            .or(lps.as_ref().map(Vec::len))
            .unwrap_or(0);
        Ok(Generation {
            text: with_prefix(&req.assistant_prefix, &text),
            mean_logprob: self.mean_logprob(lps.as_deref(), true),
            n_tokens,
            seconds,
        })
    }

    fn mean_logprob(&self, lps: Option<&[f64]>, notice: bool) -> f64 {
        match lps {
            Some(l) if !l.is_empty() => l.iter().sum::<f64>() / l.len() as f64,
            _ => {
                if self.cfg.logprobs && notice {
                    self.notice_no_logprobs();
                }
                self.cfg.fallback_confidence.ln()
            }
        }
    }

    /// Generate with `"stream": true`, handing each piece of text to `on_text`.
    pub async fn generate_stream(
        &self,
        req: &GenerateRequest,
        on_text: &mut (dyn FnMut(&str) + Send),
    ) -> Result<Generation, OpenAiError> {
        let (path, mut body) = self.body(
            &req.messages,
            &req.assistant_prefix,
            self.generate_params(req),
        );
        body["stream"] = json!(true);
        let mut text = String::new();
        let mut lps = Vec::new();
        let mut started = false;
        let prefix = req.assistant_prefix.clone();
        let api = self.cfg.api;
        let seconds = self
            .post_stream(&path, &body, &mut |v: &Value| {
                let Some(c) = v.pointer("/choices/0") else {
                    return;
                };
                let piece = match api {
                    Api::Chat => c.pointer("/delta/content").and_then(Value::as_str),
                    Api::Completions => c.get("text").and_then(Value::as_str),
                }
                .unwrap_or("");
                if let Some(a) = c.pointer("/logprobs/content").and_then(Value::as_array) {
                    lps.extend(a.iter().filter_map(|t| t.get("logprob")?.as_f64()));
                }
                if piece.is_empty() {
                    return;
                }
                if !started {
                    started = true;
                    if !prefix.is_empty() && !piece.starts_with(&prefix) {
                        on_text(&prefix);
                        text.push_str(&prefix);
                    }
                }
                on_text(piece);
                text.push_str(piece);
            })
            .await?;
        let n_tokens = lps.len();
        Ok(Generation {
            text: if started { text } else { prefix },
            // streamed chunks rarely carry log-probabilities: no notice
            mean_logprob: self.mean_logprob(Some(&lps), false),
            n_tokens,
            seconds,
        })
    }

    /// Embed `texts` (one request per `batch` texts), rows in order.
    pub async fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, OpenAiError> {
        let mut out = Vec::with_capacity(texts.len());
        for part in texts.chunks(self.cfg.batch) {
            let body = json!({"model": self.cfg.model, "input": part});
            let (v, _) = self.post("embeddings", &body).await?;
            let data = v.get("data").and_then(Value::as_array).ok_or_else(|| {
                OpenAiError::NoAnswer(format!(
                    "embeddings reply without `data`: {}",
                    abridge(&v.to_string())
                ))
            })?;
            let mut rows: Vec<(u64, Vec<f32>)> = Vec::with_capacity(data.len());
            for (k, d) in data.iter().enumerate() {
                let idx = d.get("index").and_then(Value::as_u64).unwrap_or(k as u64);
                let emb = d
                    .get("embedding")
                    .and_then(Value::as_array)
                    .ok_or_else(|| {
                        OpenAiError::NoAnswer("an embeddings item without `embedding`".into())
                    })?;
                // llama-cpp-python returns one vector per token for models without pooling
                let row: Vec<f32> = if emb.first().is_some_and(Value::is_array) {
                    mean_rows(emb)
                } else {
                    emb.iter()
                        .map(|x| x.as_f64().unwrap_or(f64::NAN) as f32)
                        .collect()
                };
                rows.push((idx, row));
            }
            if rows.len() != part.len() {
                return Err(OpenAiError::NoAnswer(format!(
                    "asked for {} embeddings, got {}",
                    part.len(),
                    rows.len()
                )));
            }
            rows.sort_by_key(|r| r.0);
            out.extend(rows.into_iter().map(|r| r.1));
        }
        Ok(out)
    }
}

fn mean_rows(rows: &[Value]) -> Vec<f32> {
    let mut sum: Vec<f64> = Vec::new();
    let mut n = 0usize;
    for r in rows.iter().filter_map(Value::as_array) {
        if sum.is_empty() {
            sum = vec![0.0; r.len()];
        }
        for (s, x) in sum.iter_mut().zip(r) {
            *s += x.as_f64().unwrap_or(f64::NAN);
        }
        n += 1;
    }
    sum.into_iter()
        .map(|s| (s / n.max(1) as f64) as f32)
        .collect()
}

fn first_choice(v: &Value) -> Result<&Value, OpenAiError> {
    v.pointer("/choices/0").ok_or_else(|| {
        OpenAiError::NoAnswer(format!(
            "the reply has no choices: {}",
            abridge(&v.to_string())
        ))
    })
}

fn reply_text(choice: &Value) -> String {
    choice
        .pointer("/message/content")
        .or_else(|| choice.get("text"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

fn with_prefix(prefix: &str, text: &str) -> String {
    if prefix.is_empty() || text.starts_with(prefix) {
        text.to_string()
    } else {
        format!("{prefix}{text}")
    }
}

/// The option index a token spells (`"A"`, `" a"`, `"(B"`, `"C)"`, `"D."`), if any.
pub(crate) fn letter_of(tok: &str, n: usize) -> Option<usize> {
    let t = tok
        .trim()
        .trim_start_matches(['(', '*'])
        .trim_end_matches([')', '.', ':', '*']);
    let mut chars = t.chars();
    let c = chars.next()?;
    if chars.next().is_some() || !c.is_ascii_alphabetic() {
        return None;
    }
    let i = (c.to_ascii_uppercase() as u8 - b'A') as usize;
    (i < n).then_some(i)
}

fn logsumexp(xs: &[f64]) -> f64 {
    let mx = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    mx + xs.iter().map(|x| (x - mx).exp()).sum::<f64>().ln()
}
