//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/*`) through the fuzz targets'
//! bodies, so CI checks every input the fuzzers kept, on stable, without libFuzzer.

#[path = "../../fuzz/targets.rs"]
mod targets;

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut inputs = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| run(&data));
        assert!(
            outcome.is_ok(),
            "{target}: input {} broke an invariant",
            path.display()
        );
        inputs += 1;
    }
    assert!(inputs > 0, "{target}: empty corpus");
}

#[test]
fn credential_corpus() {
    replay("credential", targets::credential);
}

#[test]
fn layer_corpus() {
    replay("layer", targets::layer);
}

#[test]
fn scopes_corpus() {
    replay("scopes", targets::scopes);
}
