//! One reader for tabular files: JSON Lines, CSV/TSV (the `csv` crate) and Parquet (the
//! `parquet` crate's Arrow reader). A [`Table`] is column-oriented; nested objects and Arrow
//! structs become dotted column names (`choices.label`), so a mapping names any field the
//! same way whatever the file format.

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type};
use arrow_array::{Array, ArrayRef};
use arrow_schema::{DataType, Field};
use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::FileError;

/// A file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// One JSON object per line (`.jsonl`, `.ndjson`).
    Jsonl,
    /// Comma-separated values with a header row (`.csv`).
    Csv,
    /// Tab-separated values with a header row (`.tsv`).
    Tsv,
    /// Apache Parquet (`.parquet`; what Hugging Face datasets ship).
    Parquet,
}

impl Format {
    /// The format a file name's extension says, if any.
    pub fn of(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        Some(match ext.as_str() {
            "jsonl" | "ndjson" => Format::Jsonl,
            "csv" => Format::Csv,
            "tsv" => Format::Tsv,
            "parquet" | "pq" => Format::Parquet,
            _ => return None,
        })
    }
}

/// One value of a table.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    /// Missing, empty or null.
    Null,
    /// Text (every CSV value starts as text).
    Text(String),
    /// A number (integers included).
    Number(f64),
    /// A boolean.
    Bool(bool),
    /// A list of texts (options, labels).
    TextList(Vec<String>),
    /// A list of numbers (an embedding, per-option scores).
    NumberList(Vec<f32>),
}

impl Cell {
    /// The value as text: text as is, a whole number without a fraction, a boolean as
    /// `true`/`false`; lists and null are `None`.
    pub fn text(&self) -> Option<Cow<'_, str>> {
        match self {
            Cell::Text(s) => Some(Cow::Borrowed(s)),
            Cell::Number(x) if x.fract() == 0.0 && x.abs() < 1e15 => {
                Some(Cow::Owned(format!("{}", *x as i64)))
            }
            Cell::Number(x) => Some(Cow::Owned(x.to_string())),
            Cell::Bool(b) => Some(Cow::Owned(b.to_string())),
            _ => None,
        }
    }
    /// The value as a number: numbers as is, booleans as 0/1, text parsed.
    pub fn number(&self) -> Option<f64> {
        match self {
            Cell::Number(x) => Some(*x),
            Cell::Bool(b) => Some(f64::from(*b as u8)),
            Cell::Text(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
    /// The value as a list of texts; a text holding a JSON array of strings counts (a CSV
    /// column of lists).
    pub fn text_list(&self) -> Option<Vec<String>> {
        match self {
            Cell::TextList(v) => Some(v.clone()),
            Cell::NumberList(v) => Some(v.iter().map(|x| x.to_string()).collect()),
            Cell::Text(s) if s.trim_start().starts_with('[') => serde_json::from_str(s).ok(),
            _ => None,
        }
    }
    /// The value as a list of numbers; a text holding a JSON array of numbers counts.
    pub fn number_list(&self) -> Option<Cow<'_, [f32]>> {
        match self {
            Cell::NumberList(v) => Some(Cow::Borrowed(v)),
            Cell::Text(s) if s.trim_start().starts_with('[') => {
                serde_json::from_str::<Vec<f32>>(s).ok().map(Cow::Owned)
            }
            _ => None,
        }
    }
    /// Whether the value is missing.
    pub fn is_null(&self) -> bool {
        matches!(self, Cell::Null)
    }
}

/// A table read from a file: named columns of equal length.
#[derive(Clone, Debug)]
pub struct Table {
    /// The file it was read from.
    pub path: PathBuf,
    /// Its format.
    pub format: Format,
    /// Number of rows.
    pub n_rows: usize,
    columns: IndexMap<String, Vec<Cell>>,
    /// For text formats, the line each row starts on (1-based).
    lines: Vec<u64>,
    /// Columns of a type rgd does not read, with the type (an error only when used).
    unsupported: Vec<(String, String)>,
}

impl Table {
    /// Read `path` as `format` (or the format its extension says).
    pub fn read(path: &Path, format: Option<Format>) -> Result<Table, FileError> {
        let format = format.or_else(|| Format::of(path)).ok_or_else(|| {
            FileError::invalid(
                path,
                "cannot tell the file's format from its extension: name it .jsonl, .csv, .tsv or .parquet, or set `format`",
            )
        })?;
        match format {
            Format::Jsonl => read_jsonl(path),
            Format::Csv => read_csv(path, b',', Format::Csv),
            Format::Tsv => read_csv(path, b'\t', Format::Tsv),
            Format::Parquet => read_parquet(path),
        }
    }

    /// The column names, in file order.
    pub fn names(&self) -> Vec<&str> {
        self.columns.keys().map(String::as_str).collect()
    }
    /// Whether the table has this column.
    pub fn has(&self, name: &str) -> bool {
        self.columns.contains_key(name)
    }
    /// A column; the error names the file, the column and the columns there are.
    pub fn column(&self, name: &str) -> Result<&[Cell], FileError> {
        if let Some(c) = self.columns.get(name) {
            return Ok(c);
        }
        if let Some((_, ty)) = self.unsupported.iter().find(|(n, _)| n == name) {
            return Err(FileError::invalid(
                &self.path,
                format!(
                    "column `{name}` has type {ty}, which rgd does not read (text, numbers, booleans, lists of those, structs)"
                ),
            ));
        }
        Err(FileError::MissingColumn {
            path: self.path.clone(),
            column: name.to_string(),
            found: self.names().join(", "),
        })
    }
    /// Where row `i` is, for messages: `line N` for text formats, `row N` for Parquet.
    pub fn at(&self, i: usize) -> String {
        match self.lines.get(i) {
            Some(l) => format!("line {l}"),
            None => format!("row {}", i + 1),
        }
    }
}

/// Flatten one JSON value into dotted columns of row `row`.
fn put_json(cols: &mut IndexMap<String, Vec<Cell>>, row: usize, key: String, v: serde_json::Value) {
    use serde_json::Value;
    let cell = match v {
        Value::Object(m) => {
            for (k, v) in m {
                put_json(cols, row, format!("{key}.{k}"), v);
            }
            return;
        }
        Value::Null => Cell::Null,
        Value::Bool(b) => Cell::Bool(b),
        Value::Number(n) => n.as_f64().map(Cell::Number).unwrap_or(Cell::Null),
        Value::String(s) => Cell::Text(s),
        Value::Array(a) => {
            if a.iter().all(|x| x.is_string()) {
                Cell::TextList(
                    a.into_iter()
                        .map(|x| x.as_str().unwrap_or_default().to_string())
                        .collect(),
                )
            } else if a.iter().all(|x| x.is_number()) {
                Cell::NumberList(
                    a.iter()
                        .map(|x| x.as_f64().unwrap_or(f64::NAN) as f32)
                        .collect(),
                )
            } else {
                Cell::Text(Value::Array(a).to_string())
            }
        }
    };
    let col = cols.entry(key).or_default();
    col.resize(row, Cell::Null);
    col.push(cell);
}

fn read_jsonl(path: &Path) -> Result<Table, FileError> {
    use std::io::BufRead;
    let f = std::fs::File::open(path).map_err(|e| FileError::io(path, e))?;
    let mut cols: IndexMap<String, Vec<Cell>> = IndexMap::new();
    let mut lines = Vec::new();
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|e| FileError::io(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(&line).map_err(|e| FileError::Parse {
            path: path.to_path_buf(),
            at: format!("line {}", i + 1),
            msg: e.to_string(),
        })?;
        let serde_json::Value::Object(m) = v else {
            return Err(FileError::Parse {
                path: path.to_path_buf(),
                at: format!("line {}", i + 1),
                msg: "each line must be a JSON object".into(),
            });
        };
        let row = lines.len();
        for (k, v) in m {
            put_json(&mut cols, row, k, v);
        }
        lines.push(i as u64 + 1);
    }
    let n = lines.len();
    for c in cols.values_mut() {
        c.resize(n, Cell::Null);
    }
    Ok(Table {
        path: path.to_path_buf(),
        format: Format::Jsonl,
        n_rows: n,
        columns: cols,
        lines,
        unsupported: vec![],
    })
}

fn read_csv(path: &Path, delimiter: u8, format: Format) -> Result<Table, FileError> {
    let mut r = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .from_path(path)
        .map_err(|e| FileError::csv(path, e))?;
    let headers: Vec<String> = r
        .headers()
        .map_err(|e| FileError::csv(path, e))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    let mut seen = std::collections::HashSet::new();
    if let Some(d) = headers.iter().find(|h| !seen.insert(h.as_str())) {
        return Err(FileError::invalid(
            path,
            format!("the header names column `{d}` twice"),
        ));
    }
    let mut cols: Vec<Vec<Cell>> = vec![Vec::new(); headers.len()];
    let mut lines = Vec::new();
    for rec in r.records() {
        let rec = rec.map_err(|e| FileError::csv(path, e))?;
        lines.push(rec.position().map(|p| p.line()).unwrap_or(0));
        for (c, v) in cols.iter_mut().zip(rec.iter()) {
            c.push(if v.is_empty() {
                Cell::Null
            } else {
                Cell::Text(v.to_string())
            });
        }
    }
    Ok(Table {
        path: path.to_path_buf(),
        format,
        n_rows: lines.len(),
        columns: headers.into_iter().zip(cols).collect(),
        lines,
        unsupported: vec![],
    })
}

fn is_text(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Dictionary(..)
    )
}

/// Append the cells of one Arrow column (flattening structs into dotted names).
fn put_arrow(
    cols: &mut IndexMap<String, Vec<Cell>>,
    unsupported: &mut Vec<(String, String)>,
    name: &str,
    a: &ArrayRef,
) -> Result<(), arrow_schema::ArrowError> {
    let n = a.len();
    let ty = a.data_type().clone();
    let cells: Vec<Cell> = match &ty {
        DataType::Struct(fields) => {
            let s = a.as_struct();
            // (a struct that is null has null fields in Parquet, so the children say it)
            for (f, c) in fields.iter().zip(s.columns()) {
                put_arrow(cols, unsupported, &format!("{name}.{}", f.name()), c)?;
            }
            return Ok(());
        }
        DataType::Boolean => {
            let b = a.as_boolean();
            (0..n)
                .map(|i| {
                    if b.is_null(i) {
                        Cell::Null
                    } else {
                        Cell::Bool(b.value(i))
                    }
                })
                .collect()
        }
        t if is_text(t) => {
            let c = arrow_cast::cast(a, &DataType::Utf8)?;
            let s = c.as_string::<i32>();
            (0..n)
                .map(|i| {
                    if s.is_null(i) {
                        Cell::Null
                    } else {
                        Cell::Text(s.value(i).to_string())
                    }
                })
                .collect()
        }
        t if t.is_numeric() => {
            let c = arrow_cast::cast(a, &DataType::Float64)?;
            let x = c.as_primitive::<Float64Type>();
            (0..n)
                .map(|i| {
                    if x.is_null(i) {
                        Cell::Null
                    } else {
                        Cell::Number(x.value(i))
                    }
                })
                .collect()
        }
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _)
            if is_text(f.data_type()) || f.data_type().is_numeric() =>
        {
            let text = is_text(f.data_type());
            let inner = if text {
                DataType::Utf8
            } else {
                DataType::Float32
            };
            let c = arrow_cast::cast(
                a,
                &DataType::List(Arc::new(Field::new_list_field(inner, true))),
            )?;
            let l = c.as_list::<i32>();
            let offsets = l.value_offsets();
            let values = l.values();
            if text {
                let v = values.as_string::<i32>();
                (0..n)
                    .map(|i| {
                        if l.is_null(i) {
                            return Cell::Null;
                        }
                        let (s, e) = (offsets[i] as usize, offsets[i + 1] as usize);
                        Cell::TextList((s..e).map(|j| v.value(j).to_string()).collect())
                    })
                    .collect()
            } else {
                let v = values.as_primitive::<Float32Type>();
                let raw = v.values();
                (0..n)
                    .map(|i| {
                        if l.is_null(i) {
                            return Cell::Null;
                        }
                        let (s, e) = (offsets[i] as usize, offsets[i + 1] as usize);
                        if v.null_count() > 0 && (s..e).any(|j| v.is_null(j)) {
                            // a missing element: the list is unusable as numbers
                            return Cell::Null;
                        }
                        Cell::NumberList(raw[s..e].to_vec())
                    })
                    .collect()
            }
        }
        other => {
            if !unsupported.iter().any(|(n, _)| n == name) {
                unsupported.push((name.to_string(), other.to_string()));
            }
            return Ok(());
        }
    };
    cols.entry(name.to_string()).or_default().extend(cells);
    Ok(())
}

fn read_parquet(path: &Path) -> Result<Table, FileError> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let f = std::fs::File::open(path).map_err(|e| FileError::io(path, e))?;
    let bad = |e: String| FileError::Parse {
        path: path.to_path_buf(),
        at: "file".into(),
        msg: e,
    };
    let reader = ParquetRecordBatchReaderBuilder::try_new(f)
        .map_err(|e| bad(format!("not a readable Parquet file: {e}")))?
        .with_batch_size(65_536)
        .build()
        .map_err(|e| bad(e.to_string()))?;
    let mut cols: IndexMap<String, Vec<Cell>> = IndexMap::new();
    let mut unsupported = Vec::new();
    let mut n = 0;
    for batch in reader {
        let batch = batch.map_err(|e| bad(e.to_string()))?;
        let schema = batch.schema();
        for (field, col) in schema.fields().iter().zip(batch.columns()) {
            put_arrow(&mut cols, &mut unsupported, field.name(), col)
                .map_err(|e| bad(format!("column `{}`: {e}", field.name())))?;
        }
        n += batch.num_rows();
    }
    Ok(Table {
        path: path.to_path_buf(),
        format: Format::Parquet,
        n_rows: n,
        columns: cols,
        lines: vec![],
        unsupported,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_flattens_objects_and_pads_missing_keys() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.jsonl");
        std::fs::write(
            &p,
            "{\"a\": 1, \"c\": {\"label\": [\"A\", \"B\"]}}\n\n{\"b\": \"x\", \"e\": [0.5, 1]}\n",
        )
        .unwrap();
        let t = Table::read(&p, None).unwrap();
        assert_eq!(t.n_rows, 2);
        assert_eq!(t.names(), vec!["a", "c.label", "b", "e"]);
        assert_eq!(t.column("a").unwrap()[1], Cell::Null);
        assert_eq!(t.column("b").unwrap()[1], Cell::Text("x".into()));
        assert_eq!(t.column("e").unwrap()[1], Cell::NumberList(vec![0.5, 1.0]));
        assert_eq!(t.at(1), "line 3");
        let e = t.column("question").unwrap_err().to_string();
        assert!(
            e.contains("t.jsonl") && e.contains("`question`") && e.contains("a, c.label, b, e"),
            "{e}"
        );
    }

    #[test]
    fn a_bad_json_line_names_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.jsonl");
        std::fs::write(&p, "{\"a\": 1}\n{\"a\": \n").unwrap();
        let e = Table::read(&p, None).unwrap_err().to_string();
        assert!(e.contains("t.jsonl") && e.contains("line 2"), "{e}");
    }
}
