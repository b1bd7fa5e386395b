//! The framework's own pipeline tables (not components chosen by `type`), documented from
//! their typed structs for `rgd plugins`.

use crate::error::Result;
use rgd_core::pipeline::Located;
use rgd_core::registry::FieldDoc;

/// Deserialize a framework table: an unknown or mistyped key is an error naming the key and
/// the table's place.
pub fn parse<T: serde::de::DeserializeOwned>(l: &Located) -> Result<T> {
    Ok(rgd_core::pipeline::parse_table(l)?)
}

/// One framework table and its fields.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TableDoc {
    /// The table as written in a pipeline (`[costs]`).
    pub table: &'static str,
    /// What it is for.
    pub doc: String,
    /// Its fields.
    pub fields: Vec<FieldDoc>,
}

fn doc<T: schemars::JsonSchema>(table: &'static str) -> TableDoc {
    let (doc, fields) = rgd_core::registry::describe_schema(&schemars::schema_for!(T));
    TableDoc { table, doc, fields }
}

/// Every framework table of a pipeline with its fields.
pub fn framework_tables() -> Vec<TableDoc> {
    vec![
        doc::<rgd_core::pipeline::RawPipeline>("(top level)"),
        doc::<rgd_core::pipeline::GenerateTable>("[generate]"),
        doc::<rgd_core::pipeline::DescribeTable>("[generate.describe]"),
        doc::<crate::data::MemberTable>("[pool.NAME]"),
        doc::<crate::cost::CostsTable>("[costs]"),
        doc::<crate::session::CacheTable>("[cache]"),
    ]
}
