//! The one list of rgd's built-in components.
//!
//! Components register themselves through `inventory` when their crate is linked; a crate that
//! nothing references is not linked. This crate references every component crate its
//! `Cargo.toml` lists (a Cargo feature per family, `default` = all), and the binary, the Python
//! package, the tests and the examples depend on it instead of naming the crates themselves.
//! [`registry`] is the built-in registry of exactly the linked components.

include!(concat!(env!("OUT_DIR"), "/linked.rs"));

/// The registry of every linked built-in component (what `rgd plugins` lists).
pub fn registry() -> rgd_core::Result<rgd_core::Registry> {
    rgd_core::Registry::builtin()
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_linked_crate_registers_its_components_and_the_list_names_them() {
        let r = super::registry().unwrap();
        let mut crates = std::collections::BTreeSet::new();
        for kind in rgd_core::registry::Kind::ALL {
            for e in r.entries(kind) {
                if let rgd_core::Origin::BuiltIn { crate_name } = &e.origin {
                    crates.insert(crate_name.clone());
                }
            }
        }
        for c in super::LINKED {
            assert!(
                crates.contains(*c) || *c == "rgd-labelers",
                "`{c}` is linked but registered nothing (registered: {crates:?})"
            );
        }
        assert!(super::LINKED.contains(&"rgd-sim"));
        #[cfg(feature = "routers")]
        assert!(r.get(rgd_core::registry::Kind::Router, "cascal").is_some());
    }
}
