//! `rgd plugins`: every registered component type per kind with its fields, the pipeline's
//! process components, and the framework's own tables.

use anyhow::Result;
use rgd_core::{Kind, Pipeline, Registry};

/// Print to stdout; a closed pipe (`rgd plugins | head`) is not an error.
pub fn emit(text: &str) -> Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

/// A component offered by a pipeline's process (or why asking failed).
pub struct ProcessComponent {
    table: String,
    command: Vec<String>,
    offered: std::result::Result<Vec<rgd_process::Offered>, String>,
}

/// Ask every `type = "process"` router, filter and labeler of a pipeline what it offers.
pub fn process_components(p: &Pipeline) -> Vec<ProcessComponent> {
    p.routers
        .iter()
        .map(|(n, l)| (format!("routers.{n}"), l))
        .chain(p.filters.iter().map(|(n, l)| (format!("filters.{n}"), l)))
        .chain(p.labelers.iter().map(|(n, l)| (format!("labelers.{n}"), l)))
        .filter(|(_, l)| l.table.get("type").and_then(|t| t.as_str()) == Some("process"))
        .map(|(table, l)| {
            let command: Vec<String> = l
                .table
                .get("command")
                .and_then(|c| c.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            let offered = rgd_process::offered(&command, 10.0).map_err(|e| e.to_string());
            ProcessComponent {
                table,
                command,
                offered,
            }
        })
        .collect()
}

/// One line per documented field.
pub fn write_fields(o: &mut String, fields: &[rgd_core::registry::FieldDoc]) -> std::fmt::Result {
    use std::fmt::Write;
    for f in fields {
        let default = match &f.default {
            None => "required".to_string(),
            Some(serde_json::Value::Null) => "optional".to_string(),
            Some(v) => format!("default {v}"),
        };
        writeln!(
            o,
            "      {:<22} {:<8} {:<18} {}",
            f.name, f.ty, default, f.doc
        )?;
    }
    Ok(())
}

/// Print every component type, process component and framework table (text or JSON).
pub fn plugins(registry: &Registry, processes: &[ProcessComponent], json: bool) -> Result<()> {
    use std::fmt::Write;
    let mut o = String::new();
    if json {
        let mut v = serde_json::Map::new();
        let procs: Vec<serde_json::Value> = processes
            .iter()
            .map(|p| match &p.offered {
                Ok(list) => serde_json::json!({
                    "table": p.table,
                    "origin": rgd_core::Origin::Process { command: p.command.clone() },
                    "components": list,
                }),
                Err(e) => serde_json::json!({"table": p.table, "command": p.command, "error": e}),
            })
            .collect();
        if !procs.is_empty() {
            v.insert("process components".into(), procs.into());
        }
        v.insert(
            "pipeline tables".into(),
            serde_json::to_value(rgd_experiment::tables::framework_tables())?,
        );
        for kind in Kind::ALL {
            let list: Vec<serde_json::Value> = registry
                .entries(kind)
                .map(|e| {
                    serde_json::json!({
                        "type": e.type_name, "doc": e.doc, "origin": e.origin, "fields": e.fields
                    })
                })
                .collect();
            v.insert(kind.to_string(), list.into());
        }
        return emit(&(serde_json::to_string_pretty(&v)? + "\n"));
    }
    for kind in Kind::ALL {
        writeln!(o, "{kind}s:")?;
        let mut any = false;
        for e in registry.entries(kind) {
            any = true;
            writeln!(o, "  {:<18} {}  [{}]", e.type_name, e.doc, e.origin)?;
            write_fields(&mut o, &e.fields)?;
        }
        if !any {
            writeln!(o, "  (none registered yet)")?;
        }
    }
    writeln!(o, "pipeline tables (read by rgd itself):")?;
    for t in rgd_experiment::tables::framework_tables() {
        writeln!(o, "  {:<18} {}", t.table, t.doc)?;
        write_fields(&mut o, &t.fields)?;
    }
    if !processes.is_empty() {
        writeln!(o, "process components (asked at start-up):")?;
        for p in processes {
            let origin = rgd_core::Origin::Process {
                command: p.command.clone(),
            };
            match &p.offered {
                Ok(list) => {
                    for c in list {
                        writeln!(
                            o,
                            "  {:<18} {} {}  [{origin}; used by [{}]]",
                            c.type_name, c.kind, c.doc, p.table
                        )?;
                    }
                }
                Err(e) => writeln!(o, "  [{}]: {e}", p.table)?,
            }
        }
    }
    writeln!(
        o,
        "references (computed by every run on the test split): best_single (in hindsight), oracle, random, each single model"
    )?;
    emit(&o)
}
