//! World-fit checks name the exact import or export that is wrong.

use tether_tests::{repo_root, runtime};

fn inspect(path: &std::path::Path) -> tether_runtime::ComponentInfo {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    rt.block_on(runtime().inspect(path)).unwrap()
}

fn component_file(name: &str, wat: &str) -> std::path::PathBuf {
    let dir = repo_root().join("target").join("inspect-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, wat::parse_str(wat).unwrap()).unwrap();
    path
}

#[test]
fn an_import_tether_does_not_provide_is_named() {
    let path = component_file("foreign-import.wasm", r#"(component (import "acme:secrets/vault@1.0.0" (instance)))"#);
    let info = inspect(&path);
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
    let info = inspect(&path);
    assert_eq!(
        info.step.problem.as_deref(),
        Some("does not export `tether:plugin/step@0.1.0`, so it is not a step (it exports nothing)")
    );
    assert_eq!(
        info.tool.problem.as_deref(),
        Some("does not export `tether:plugin/tool@0.1.0`, so it is not a tool (it exports nothing)")
    );
}

#[test]
fn a_tool_describes_itself_with_schemas_and_effect() {
    let info = inspect(std::path::Path::new(tether_tests::artifacts::CUSTOMER_LOOKUP));
    let d = info.descriptor.unwrap().unwrap();
    assert_eq!(d.name, "customer-lookup");
    assert_eq!(d.effect, tether_types::Effect::ReadOnly);
    assert_eq!(d.input_schema["required"][0], "email");
    let info = inspect(std::path::Path::new(tether_tests::artifacts::CLASSIFY));
    assert!(info.descriptor.is_none(), "steps are not asked to describe themselves");
}

#[test]
fn a_component_with_more_core_instances_than_a_sandbox_allows_is_refused_when_loaded() {
    // 65 instances of an empty module: over the limit of 64 that instantiation would hit.
    let instances = "(core instance (instantiate $m))".repeat(65);
    let path = component_file("many-instances.wasm", &format!("(component (core module $m) {instances})"));
    let err = runtime().load_step(&path).err().unwrap().to_string();
    assert!(err.contains("65 core module instances") && err.contains("maximum of 64"), "{err}");
    // Through the CLI: a usage error naming the file, before any run is journaled.
    let dir = crate::support::fresh_dir("many-instances");
    let wf = dir.join("wf.toml");
    std::fs::write(
        &wf,
        format!("name = \"m\"\n[[steps]]\nname = \"s\"\ncomponent = {:?}\n", path.display().to_string()),
    )
    .unwrap();
    let o = crate::support::tether_cmd(&dir.join("journal.db")).args(["run", wf.to_str().unwrap()]).output().unwrap();
    let text = crate::support::output(&o);
    assert_eq!(o.status.code(), Some(2), "{text}");
    assert!(text.contains("many-instances.wasm") && text.contains("maximum of 64"), "{text}");
}
