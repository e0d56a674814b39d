//! The AOT cache: compiled once, reused, and a corrupted entry is rebuilt, never loaded.

use std::path::Path;

use tether_runtime::{Runtime, RuntimeConfig};
use tether_tests::{artifacts, repo_root};

fn runtime_with_cache(dir: &Path) -> Runtime {
    Runtime::new(RuntimeConfig { cache_dir: Some(dir.to_path_buf()), max_sandboxes: 4, ..RuntimeConfig::default() })
        .unwrap()
}

fn entries(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    v.retain(|p| p.extension().is_some_and(|e| e == "cwasm"));
    v
}

#[test]
fn a_corrupted_cache_entry_is_rebuilt_not_loaded() {
    let dir = repo_root().join("target").join("cache-test");
    let _ = std::fs::remove_dir_all(&dir);
    let digest = runtime_with_cache(&dir).load_step(Path::new(artifacts::CLASSIFY)).unwrap().digest;
    let written = entries(&dir);
    assert_eq!(written.len(), 1, "one compiled artifact");
    let entry = &written[0];
    assert!(entry.file_name().unwrap().to_str().unwrap().starts_with(&digest), "keyed by the wasm's sha256");

    for corruption in [b"garbage".to_vec(), std::fs::read(entry).unwrap()[..4096].to_vec()] {
        std::fs::write(entry, &corruption).unwrap();
        // A new process (runtime) finds the bad entry, compiles afresh and replaces it.
        let step = runtime_with_cache(&dir).load_step(Path::new(artifacts::CLASSIFY)).unwrap();
        assert_eq!(step.digest, digest);
        let rebuilt = std::fs::read(entry).unwrap();
        assert!(rebuilt.len() > corruption.len(), "the entry was rewritten");
    }
}
