//! Task descriptions as data: a TOML file (`"subject" = "description"`, top-level keys) or a
//! JSON object of the same shape, one per benchmark. `descriptions/` at the repository root
//! ships them for every subject of the benchmarks rgd installs. And the describe stage, where an
//! LLM writes a description from example questions. (Here, in the core, so the generator and
//! the experiment both use them without depending on each other.)

use crate::{Error, GenerateRequest, LlmBackend, Message, Question, SubjectDescription};
use indexmap::IndexMap;
use std::path::Path;

/// Read a descriptions file, keeping the file's order.
pub fn load(path: &Path) -> Result<IndexMap<String, String>, Error> {
    let name = path.display().to_string();
    let err = |msg: String| Error::Config {
        context: name.clone(),
        msg,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let is_json = path.extension().is_some_and(|e| e == "json");
    let map: IndexMap<String, serde_json::Value> = if is_json {
        serde_json::from_str(&text)
            .map_err(|e| err(format!("line {} column {}: {e}", e.line(), e.column())))?
    } else {
        let t: toml::Table =
            toml::from_str(&text).map_err(|e| err(e.to_string().trim().to_string()))?;
        t.into_iter()
            .map(|(k, v)| {
                let v = match v {
                    toml::Value::String(s) => serde_json::Value::String(s),
                    toml::Value::Integer(_) | toml::Value::Float(_) => serde_json::Value::from(0),
                    toml::Value::Boolean(_) => serde_json::Value::Bool(false),
                    toml::Value::Array(_) => serde_json::Value::Array(Vec::new()),
                    toml::Value::Table(_) => serde_json::Value::Object(Default::default()),
                    toml::Value::Datetime(_) => serde_json::Value::Null,
                };
                (k, v)
            })
            .collect()
    };
    let mut out = IndexMap::new();
    for (k, v) in map {
        match v {
            serde_json::Value::String(s) if !s.trim().is_empty() => {
                out.insert(k, s.trim().to_string());
            }
            serde_json::Value::String(_) => {
                return Err(err(format!("subject `{k}`: the description is empty")));
            }
            other => {
                return Err(err(format!(
                    "subject `{k}`: the description must be a string, got {}",
                    kind(&other)
                )));
            }
        }
    }
    if out.is_empty() {
        return Err(err("no subject described".into()));
    }
    Ok(out)
}

fn kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "something else",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "a table",
    }
}

/// Which subjects to generate for, and what was left out.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Selection {
    /// Subjects with a description, to generate for (in the file's order).
    pub chosen: Vec<SubjectDescription>,
    /// Described subjects that the test set does not have (skipped, reported).
    pub unknown: Vec<String>,
    /// Test subjects without a description (no training data for them, reported).
    pub undescribed: Vec<String>,
}

/// The description of a test subject: its own key, or the part after the last `/` (test
/// subjects may carry a benchmark prefix, `mmlu/anatomy`).
fn lookup<'a>(descriptions: &'a IndexMap<String, String>, subject: &str) -> Option<&'a String> {
    descriptions.get(subject).or_else(|| {
        subject
            .rsplit_once('/')
            .and_then(|(_, s)| descriptions.get(s))
    })
}

/// Choose subjects: every test subject with a description (or only those `wanted` names, by
/// test subject or description key). A wanted subject without a description is an error
/// naming it; described subjects absent from the test set and test subjects without a
/// description are counted, not fatal. Chosen subjects carry the test set's subject names.
pub fn select(
    descriptions: &IndexMap<String, String>,
    wanted: &[String],
    test_subjects: &[String],
    file: &str,
) -> Result<Selection, Error> {
    let mut sel = Selection::default();
    let base = |s: &str| {
        s.rsplit_once('/')
            .map(|x| x.1.to_string())
            .unwrap_or_else(|| s.to_string())
    };
    for w in wanted {
        if lookup(descriptions, w).is_none() {
            return Err(Error::Config {
                context: file.to_string(),
                msg: format!("no description for subject `{w}` (named in [generate] subjects)"),
            });
        }
    }
    let mut used: Vec<String> = Vec::new();
    for t in test_subjects {
        let Some(d) = lookup(descriptions, t) else {
            sel.undescribed.push(t.clone());
            continue;
        };
        let key = if descriptions.contains_key(t) {
            t.clone()
        } else {
            base(t)
        };
        used.push(key.clone());
        if !wanted.is_empty() && !wanted.contains(t) && !wanted.contains(&key) {
            continue;
        }
        sel.chosen.push(SubjectDescription {
            subject: t.clone(),
            description: d.clone(),
        });
    }
    sel.unknown = descriptions
        .keys()
        .filter(|k| !used.contains(k))
        .filter(|k| wanted.is_empty() || wanted.contains(k))
        .cloned()
        .collect();
    Ok(sel)
}

/// The describe stage: an LLM writes a subject's description, in docs/rgd.md's style, from a few
/// unlabeled example questions (greedy decoding, so it is deterministic).
pub fn describe(
    backend: &dyn LlmBackend,
    subject: &str,
    examples: &[Question],
) -> crate::Result<String> {
    let mut user = format!(
        "Here are {} example questions from one subject of an exam ({subject}):\n\n",
        examples.len()
    );
    for (i, q) in examples.iter().enumerate() {
        user.push_str(&format!(
            "{}. {}\n",
            i + 1,
            q.text.trim().replace('\n', " ")
        ));
    }
    user.push_str(
        "\nWrite one paragraph of 25 to 45 words that describes the kind of questions in this subject, in exactly this style: \"These questions describe <the problem type>, covering <4 to 6 concrete sub-topics>, and require <calculation, recall or conceptual reasoning>.\" Reply with the paragraph only.",
    );
    let g = backend.generate(&GenerateRequest {
        messages: vec![
            Message {
                role: "system".into(),
                content: "You write short, precise descriptions of exam subjects.".into(),
            },
            Message {
                role: "user".into(),
                content: user,
            },
        ],
        temperature: 0.0,
        top_p: 1.0,
        max_tokens: 120,
        seed: 0,
        assistant_prefix: "These questions describe".into(),
    })?;
    Ok(clean_description(&g.text))
}

/// The first paragraph of a reply, unquoted, at most 80 words.
pub fn clean_description(reply: &str) -> String {
    let para = reply
        .split("\n\n")
        .map(str::trim)
        .find(|p| !p.is_empty())
        .unwrap_or("");
    let para = para.trim_matches(|c: char| c == '"' || c == '\'' || c == '`' || c.is_whitespace());
    para.split_whitespace()
        .take(80)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_and_json_with_clear_errors() {
        let d = tempfile_dir();
        let p = d.join("d.toml");
        std::fs::write(
            &p,
            "\"high school biology\" = \"These questions describe cells.\"\nanatomy = \"Bones.\"\n",
        )
        .unwrap();
        let m = load(&p).unwrap();
        assert_eq!(
            m.keys().collect::<Vec<_>>(),
            ["high school biology", "anatomy"]
        );
        std::fs::write(&p, "anatomy = 3\n").unwrap();
        let e = load(&p).unwrap_err().to_string();
        assert!(
            e.contains("d.toml") && e.contains("`anatomy`") && e.contains("a number"),
            "{e}"
        );
        std::fs::write(&p, "anatomy = \"x\"\nanatomy = \"y\"\n").unwrap();
        let e = load(&p).unwrap_err().to_string();
        assert!(e.contains("line 2"), "{e}");
        let j = d.join("d.json");
        std::fs::write(&j, "{\"anatomy\": \"Bones.\",\n \"x\": }").unwrap();
        let e = load(&j).unwrap_err().to_string();
        assert!(e.contains("d.json") && e.contains("line 2"), "{e}");
    }

    #[test]
    fn selection_counts_unknown_and_undescribed_subjects() {
        let mut m = IndexMap::new();
        m.insert("a".to_string(), "A.".to_string());
        m.insert("b".to_string(), "B.".to_string());
        m.insert("zzz".to_string(), "Z.".to_string());
        let test = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        let s = select(&m, &[], &test, "f").unwrap();
        assert_eq!(s.chosen.len(), 2);
        assert_eq!(s.unknown, ["zzz"]);
        assert_eq!(s.undescribed, ["c"]);
        let e = select(&m, &["q".to_string()], &test, "f")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`q`"), "{e}");
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("rgd-desc-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
