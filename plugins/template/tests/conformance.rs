//! The template's router and filter pass the testkit's conformance check, registered through
//! the plugin's own declaration (what `rgd` calls when it loads the library).
use rgd_core::plugin::Registrar;
use rgd_core::{Origin, Registry};
use rgd_testkit::{check_filter, check_router};

fn registry() -> Registry {
    let mut r = Registrar::new(Origin::Dylib {
        path: "linked in".into(),
    });
    assert!((rgd_plugin_template::RGD_PLUGIN_DECLARATION.register)(
        &mut r
    ));
    let (entries, error) = r.finish();
    assert_eq!(error, None);
    let mut registry = Registry::empty();
    for e in entries {
        registry.add(e).unwrap();
    }
    registry
}

#[test]
fn centroid() {
    check_router(&registry(), "type = \"centroid\"").unwrap();
}

#[test]
fn min_words() {
    check_filter(&registry(), "type = \"min_words\"").unwrap();
}

#[test]
fn peer_share() {
    rgd_testkit::check_labeler(&registry(), "type = \"peer_share\"").unwrap();
}
