//! Turns the `rgd-*` dependencies of this crate's Cargo.toml into `pub use` lines, so the list
//! of linked components is written once (in Cargo.toml) and a new component crate is one line.
//! Cargo sets `CARGO_FEATURE_<DEP>` for an optional dependency that a feature enables.

use std::fmt::Write as _;

fn main() {
    println!("cargo:rerun-if-changed=Cargo.toml");
    let manifest =
        std::fs::read_to_string("Cargo.toml").expect("components/Cargo.toml is readable");
    let doc: toml::Table = manifest
        .parse()
        .expect("components/Cargo.toml is valid TOML");
    let deps = doc
        .get("dependencies")
        .and_then(|d| d.as_table())
        .expect("components/Cargo.toml has [dependencies]");
    let mut code = String::new();
    let mut names = Vec::new();
    for (name, spec) in deps {
        if !name.starts_with("rgd-") || name == "rgd-core" {
            continue;
        }
        let optional = spec
            .as_table()
            .and_then(|t| t.get("optional"))
            .and_then(|o| o.as_bool())
            .unwrap_or(false);
        let var = format!("CARGO_FEATURE_{}", name.to_uppercase().replace('-', "_"));
        if optional && std::env::var_os(&var).is_none() {
            continue;
        }
        let ident = name.replace('-', "_");
        writeln!(
            code,
            "#[doc = \"The `{name}` component crate (linked).\"]\npub use {ident};"
        )
        .unwrap();
        names.push(name.clone());
    }
    writeln!(
        code,
        "/// The component crates linked into this build, in the order Cargo.toml lists them.\npub const LINKED: &[&str] = &{names:?};"
    )
    .unwrap();
    let out = std::path::Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("linked.rs");
    std::fs::write(out, code).expect("OUT_DIR is writable");
}
