//! Helpers shared by the integration tests.

use std::path::PathBuf;

/// The shared/ folder beside the repository (override with RGD_SHARED_DIR).
pub fn shared_dir() -> PathBuf {
    std::env::var_os("RGD_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"))
}

/// The authors' CASCAL reference fixture.
pub fn fixture_dir() -> PathBuf {
    shared_dir().join("fixtures/cascal-reference")
}
