//! `tether new step|tool NAME --lang L`: each template's project builds with its own
//! `build.sh` and runs through the host, its step calling its tool.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::support::{fresh_dir, tether_cmd};

/// PATH with the guest toolchains (componentize-py, componentize-qjs, wasm-tools) that the
/// test suite's build installed, so the build scripts do not install their own copies.
fn toolchain_path() -> String {
    let out = Command::new("bash").arg(tether_tests::repo_root().join("scripts/guest-toolchains")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut path: Vec<String> = String::from_utf8(out.stdout).unwrap().lines().map(str::to_string).collect();
    path.push(std::env::var("PATH").unwrap());
    path.join(":")
}

fn new_project(db: &Path, dir: &Path, kind: &str, name: &str, lang: &str) {
    let o = tether_cmd(db).args(["new", kind, name, "--lang", lang, "--dir"]).arg(dir).output().unwrap();
    assert!(o.status.success(), "tether new: {}", String::from_utf8_lossy(&o.stderr));
    for file in ["README.md", "build.sh", "wit/tether.wit"] {
        assert!(dir.join(file).exists(), "{lang} {kind}: no {file}");
    }
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    assert!(!readme.contains("{{"), "every placeholder is filled:\n{readme}");
    let o = Command::new(dir.join("build.sh"))
        .env("PATH", toolchain_path())
        // Rust templates share one target directory, so dependencies build once.
        .env("CARGO_TARGET_DIR", tether_tests::repo_root().join("target/templates"))
        .env_remove("RUSTFLAGS")
        .output()
        .unwrap();
    assert!(o.status.success(), "{lang} {kind}: build.sh failed:\n{}", String::from_utf8_lossy(&o.stderr));
    assert!(dir.join(format!("{name}.wasm")).exists(), "{lang} {kind}: no {name}.wasm");
}

/// Creates and builds a step and a tool in `lang`, then runs the step calling the tool.
fn template_builds_and_runs(lang: &str) {
    let root = fresh_dir(&format!("template-{lang}"));
    let db = root.join("journal.db");
    new_project(&db, &root.join("greet"), "step", "greet", lang);
    new_project(&db, &root.join("count"), "tool", "count", lang);
    std::fs::write(
        root.join("greet/with-tool.toml"),
        "name = \"with-tool\"\n[tools.count]\ncomponent = \"../count/count.wasm\"\nbudget = { memory = \"64MiB\" }\n\
         [[steps]]\nname = \"greet\"\ncomponent = \"greet.wasm\"\ntools = [\"count\"]\nbudget = { memory = \"64MiB\" }\n",
    )
    .unwrap();
    let run = |workflow: &str, input: &str| {
        let o = tether_cmd(&db)
            .current_dir(root.join("greet"))
            .args(["run", workflow, "--input", input, "--json"])
            .output()
            .unwrap();
        let report: Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|_| panic!("{lang}: no JSON; stderr:\n{}", String::from_utf8_lossy(&o.stderr)));
        (o.status.code(), report)
    };
    let (code, report) = run("with-tool.toml", r#"{"name": "Ada \"L\"", "tool": "count"}"#);
    assert_eq!(code, Some(0), "{lang}: {report}");
    let output = &report["output"];
    assert_eq!(output["greeting"], "hello, Ada \"L\"", "{lang}: {output}");
    assert_eq!(output["step"], "greet", "{lang}: {output}");
    assert_eq!((output["tool"]["tool"].as_str(), output["tool"]["chars"].as_i64()), (Some("count"), Some(7)), "{lang}");
    assert!(report["totals"]["usage"]["tokens"].as_f64().unwrap() > 0.0, "{lang}: the step reported usage");
    assert_eq!(report["totals"]["usage"]["chars"], 7.0, "{lang}: the tool reported usage");
    // try.toml runs the step alone; input that is not an object is a typed failure.
    let (code, report) = run("try.toml", "[1, 2]");
    assert_eq!(code, Some(1), "{lang}: {report}");
    assert_eq!(report["error"]["class"], "guest_error", "{lang}: {report}");
    assert_eq!(report["error"]["message"], "input must be a JSON object", "{lang}");
}

#[test]
fn the_rust_templates_build_and_run() {
    template_builds_and_runs("rust");
}

#[test]
fn the_python_templates_build_and_run() {
    template_builds_and_runs("python");
}

#[test]
fn the_javascript_templates_build_and_run() {
    template_builds_and_runs("js");
}

#[test]
fn the_c_templates_build_and_run() {
    template_builds_and_runs("c");
}

#[test]
fn the_api_tool_template_calls_an_api_with_the_credential_the_policy_binds() {
    use crate::http_server::{Answer, Server};
    let server = Server::start();
    server.route("/v1/today", Answer::json(200, &serde_json::json!({"sky": "clear"})));
    let root = fresh_dir("template-api-tool");
    let db = root.join("journal.db");
    new_project(&db, &root.join("weather"), "api-tool", "weather", "rust");
    std::fs::write(
        root.join("wf.toml"),
        format!(
            "name = \"api\"\nidentity = \"me\"\npolicy_file = \"policy.toml\"\n[tools.weather]\ncomponent = \"weather/weather.wasm\"\n\
             env = [\"API_URL\"]\nhttp = [\"{url}\"]\n[[steps]]\nname = \"ask\"\ncomponent = {:?}\ntools = [\"weather\"]\n",
            tether_tests::artifacts::HOSTILE,
            url = server.url("")
        ),
    )
    .unwrap();
    std::fs::write(
        root.join("policy.toml"),
        format!(
            "[identities.me]\ntools = [\"weather\"]\nenv = [\"API_URL\"]\n\
             http = [{{ url = \"{}\", credential = {{ secret = \"API_TOKEN\" }} }}]\n",
            server.url("")
        ),
    )
    .unwrap();
    let input = r#"{"mode": "call-tool", "tool": "weather", "input": {"path": "/v1/today"}}"#;
    let o = tether_cmd(&db)
        .current_dir(&root)
        .env("API_URL", server.url(""))
        .env("API_TOKEN", "tok-7f3a")
        .args(["run", "wf.toml", "--input", input, "--json"])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|_| panic!("no JSON; stderr:\n{}", String::from_utf8_lossy(&o.stderr)));
    assert_eq!(o.status.code(), Some(0), "{report}");
    assert_eq!(report["output"]["tool_output"], serde_json::json!({"status": 200, "body": {"sky": "clear"}}));
    let received = server.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].headers["authorization"], "Bearer tok-7f3a", "the host added the bound credential");
    let o = tether_cmd(&db).args(["new", "api-tool", "w2", "--lang", "python"]).current_dir(&root).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("use --lang rust"));
}

#[test]
fn bad_names_languages_and_directories_are_usage_errors() {
    let root = fresh_dir("template-bad");
    let db = root.join("journal.db");
    let new = |args: &[&str]| {
        let o = tether_cmd(&db).current_dir(&root).args(args).output().unwrap();
        (o.status.code(), String::from_utf8_lossy(&o.stderr).into_owned())
    };
    let (code, err) = new(&["new", "step", "Bad_Name", "--lang", "rust"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("`Bad_Name` cannot name a project"), "{err}");
    let (code, err) = new(&["new", "step", "ok", "--lang", "cobol"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("cobol") && err.contains("python"), "lists the languages: {err}");
    std::fs::create_dir_all(root.join("taken")).unwrap();
    std::fs::write(root.join("taken/keep.txt"), "mine").unwrap();
    let (code, err) = new(&["new", "tool", "taken", "--lang", "c"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("taken: the directory exists and is not empty"), "{err}");
    assert_eq!(std::fs::read_dir(root.join("taken")).unwrap().count(), 1, "nothing was written");
}
