//! World-fit checks name the exact import or export that is wrong.

use tether_tests::{repo_root, runtime};

fn component_file(name: &str, wat: &str) -> std::path::PathBuf {
    let dir = repo_root().join("target").join("inspect-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, wat::parse_str(wat).unwrap()).unwrap();
    path
}

#[test]
fn an_import_tether_does_not_provide_is_named() {
    let path = component_file(
        "foreign-import.wasm",
        r#"(component (import "acme:secrets/vault@1.0.0" (instance)))"#,
    );
    let info = runtime().inspect(&path).unwrap();
    assert_eq!(info.world, None);
    assert_eq!(
        info.step.problem.as_deref(),
        Some("imports `acme:secrets/vault@1.0.0`, which tether does not provide to a step")
    );
    let err = runtime().load_step(&path).err().unwrap().to_string();
    assert!(err.contains("acme:secrets/vault@1.0.0"), "{err}");
}

#[test]
fn a_missing_export_is_named() {
    let path = component_file("no-exports.wasm", "(component)");
    let info = runtime().inspect(&path).unwrap();
    assert_eq!(
        info.step.problem.as_deref(),
        Some(
            "does not export `tether:plugin/step@0.1.0`, so it is not a step (it exports nothing)"
        )
    );
    assert_eq!(
        info.tool.problem.as_deref(),
        Some(
            "does not export `tether:plugin/tool@0.1.0`, so it is not a tool (it exports nothing)"
        )
    );
}
