//! Helpers: workflows over the built components, and running them on the shared runtime.

use std::path::Path;

use serde_json::Value;
use tether_runtime::LoadedWorkflow;
use tether_tests::{artifacts, runtime};
use tether_types::{FailureClass, RunId, RunReport, RunStatus, Workflow};

/// Loads a workflow written inline; `{hostile}`, `{echo}`, `{trivial}`, `{classify}`,
/// `{draft}` and `{lookup}` stand for the built components.
pub fn workflow(text: &str) -> LoadedWorkflow {
    let text = text
        .replace("{hostile}", artifacts::HOSTILE)
        .replace("{echo}", artifacts::ECHO_TOOL)
        .replace("{trivial}", artifacts::TRIVIAL)
        .replace("{classify}", artifacts::CLASSIFY)
        .replace("{draft}", artifacts::DRAFT_REPLY)
        .replace("{lookup}", artifacts::CUSTOMER_LOOKUP);
    let wf = Workflow::parse("test.toml", &text).unwrap_or_else(|e| panic!("test workflow does not parse:\n{e}"));
    runtime().load_workflow(wf, Path::new("/")).unwrap_or_else(|e| panic!("test workflow does not load:\n{e}"))
}

/// One hostile step granted the `echo` tool, with the given step budget (TOML inline
/// table body) and echo tool budget.
pub fn hostile(step_budget: &str, tool_budget: &str) -> LoadedWorkflow {
    workflow(&format!(
        r#"name = "hostile"
[tools.echo]
component = "{{echo}}"
budget = {{ {tool_budget} }}
[[steps]]
name = "misbehave"
component = "{{hostile}}"
tools = ["echo"]
budget = {{ {step_budget} }}
"#
    ))
}

pub fn run(wf: &LoadedWorkflow, input: Value) -> RunReport {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let id = RunId::from_suffix("test").unwrap();
    rt.block_on(runtime().run_workflow(wf, id, &input.to_string(), |_| {}))
}

/// Runs and asserts the run failed with `class`; returns the report.
pub fn expect_failure(wf: &LoadedWorkflow, input: Value, class: FailureClass) -> RunReport {
    let report = run(wf, input);
    assert_eq!(report.status, RunStatus::Failed, "expected {class}, the run completed: {:#?}", report.output);
    let err = report.error.as_ref().unwrap();
    assert_eq!(err.class, class, "wrong class; message: {}", err.message);
    report
}

/// The host keeps working after a hostile run: a fresh run on the same runtime succeeds.
pub fn assert_host_still_works() {
    let wf = workflow("name = \"ok\"\n[[steps]]\nname = \"echo\"\ncomponent = \"{trivial}\"\n");
    let report = run(&wf, serde_json::json!({"still": "alive"}));
    assert_eq!(report.status, RunStatus::Completed, "{:?}", report.error);
    assert_eq!(report.output, serde_json::json!({"still": "alive"}));
}

/// The `tether` executable with a given journal and the test cache, backtraces off.
pub fn tether_cmd(db: &Path) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_tether"));
    c.env("TETHER_CACHE_DIR", tether_tests::cache_dir()).env("TETHER_DATABASE_URL", db).env_remove("RUST_BACKTRACE");
    c
}

/// A fresh directory under target/ for one test's files.
pub fn fresh_dir(name: &str) -> std::path::PathBuf {
    let dir = tether_tests::repo_root().join("target").join("test-dirs").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `tether` and parses its JSON stdout; panics with stderr if it is not JSON.
pub fn tether_json(db: &Path, args: &[&str]) -> (Option<i32>, Value) {
    let o = tether_cmd(db).args(args).output().unwrap();
    let v = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|_| panic!("tether {args:?} printed no JSON; stderr:\n{}", String::from_utf8_lossy(&o.stderr)));
    (o.status.code(), v)
}

/// A finished command's exit code, stdout and stderr, for assertion messages.
pub fn output(o: &std::process::Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}stderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
