//! The framework's own pipeline tables (not components chosen by `type`), documented from
//! their typed structs for `rgd plugins`. (Each table is parsed where it is used, through
//! `rgd_core::pipeline::parse_table`; this module only documents them, so it depends on the
//! modules that define them and none depends on it.)

use rgd_core::registry::FieldDoc;

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
