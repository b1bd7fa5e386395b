//! The assets the tests load are exactly the ones `scripts/test.sh` fetches.

use std::path::PathBuf;

#[test]
fn every_asset_a_test_names_is_fetched() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let listed: Vec<String> = std::fs::read_to_string(repo.join("tests/assets.txt"))
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    for name in &listed {
        assert!(
            rgd_assets::spec(name).is_ok(),
            "tests/assets.txt lists `{name}`, which is not an asset"
        );
    }
    // every test source that names an asset (as a Rust string or inside a TOML string)
    let mut missing = Vec::new();
    for dir in ["tests/it", "plugins", "routers", "generators", "core"] {
        let mut stack = vec![repo.join(dir)];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                    continue;
                }
                let is_test = p.extension().is_some_and(|x| x == "rs")
                    && (p.starts_with(repo.join("tests"))
                        || p.components().any(|c| c.as_os_str() == "tests"));
                if !is_test || p.ends_with("tests/it/assets.rs") {
                    continue;
                }
                let text = std::fs::read_to_string(&p).unwrap();
                for a in rgd_assets::ASSETS {
                    let quoted = [format!("\"{}\"", a.name), format!("\\\"{}\\\"", a.name)];
                    if quoted.iter().any(|q| text.contains(q.as_str()))
                        && !listed.iter().any(|l| l == a.name)
                    {
                        missing.push(format!("{} (named in {})", a.name, p.display()));
                    }
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "tests use assets that tests/assets.txt does not list, so scripts/test.sh never fetches them: {missing:?}"
    );
}
