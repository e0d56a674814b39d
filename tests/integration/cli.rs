//! The `tether` executable: exit codes, JSON output, and one clear error per bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use tether_tests::{artifacts, cache_dir, repo_root};

fn command(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tether"));
    c.args(args)
        .env("TETHER_CACHE_DIR", cache_dir())
        .env("TETHER_DATABASE_URL", repo_root().join("target").join("cli-tests").join("journal.db"))
        .env_remove("RUST_BACKTRACE");
    c
}

fn tether(args: &[&str]) -> Output {
    command(args).output().expect("the tether binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A scratch directory for files a test writes.
fn scratch(name: &str) -> PathBuf {
    let dir = repo_root().join("target").join("cli-tests").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(dir: &Path, file: &str, text: &str) -> String {
    let path = dir.join(file);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// A usage error: exit code 2, one clear message, no panic or backtrace.
fn assert_usage_error(o: &Output, expected: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "stderr: {err}");
    for e in expected {
        assert!(err.contains(e), "expected {e:?} in: {err}");
    }
    assert!(!err.contains("panicked") && !err.contains("stack backtrace"), "{err}");
}

#[test]
fn the_demo_workflow_runs_from_the_repo_with_json_output() {
    let wf = repo_root().join("plugins/workflows/support-triage.toml");
    let input = format!("@{}", repo_root().join("plugins/workflows/ticket.json").display());
    let o = tether(&["run", wf.to_str().unwrap(), "--input", &input, "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["run_id"].as_str().unwrap().starts_with("run_"));
    assert_eq!(v["status"], "completed");
    assert_eq!(v["output"]["category"], "billing");
    assert_eq!(v["output"]["customer_plan"], "enterprise");
    assert!(v.get("error").is_none());
}

#[test]
fn a_failed_run_exits_1_and_names_class_step_and_message() {
    let dir = scratch("failed-run");
    let wf = write(
        &dir,
        "wf.toml",
        &format!("name = \"f\"\n[[steps]]\nname = \"boom\"\ncomponent = {:?}\n", artifacts::HOSTILE),
    );
    let o = tether(&["run", &wf, "--input", r#"{"mode":"panic"}"#, "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["status"], "failed");
    assert_eq!(v["error"]["class"], "trap");
    assert_eq!(v["error"]["step"], "boom");
    assert!(v["error"]["message"].as_str().unwrap().contains("panicked on purpose"));

    // Human output says the same on stderr.
    let o = tether(&["run", &wf, "--input", r#"{"mode":"fail"}"#]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("failed at step `boom`: guest_error: upstream model unavailable"), "{}", stderr(&o));
}

#[test]
fn bad_input_json_is_a_usage_error() {
    let wf = repo_root().join("plugins/workflows/support-triage.toml");
    let o = tether(&["run", wf.to_str().unwrap(), "--input", "{not json"]);
    assert_usage_error(&o, &["--input: the input is not valid JSON"]);
    let o = tether(&["run", wf.to_str().unwrap(), "--input", "@/nonexistent/ticket.json"]);
    assert_usage_error(&o, &["cannot read the input file /nonexistent/ticket.json"]);
}

#[test]
fn a_missing_or_malformed_workflow_is_a_usage_error() {
    let o = tether(&["run", "/nonexistent/wf.toml"]);
    assert_usage_error(&o, &["/nonexistent/wf.toml: workflow file not found"]);

    let dir = scratch("malformed");
    let wf = write(&dir, "wf.toml", "name = \"x\"\n[[steps]]\nname = \"a\"\ncomponent = \"a.wasm\"\nretries = 3\n");
    let o = tether(&["run", &wf]);
    assert_usage_error(&o, &[&format!("{wf}:5:1: unknown field `retries`")]);
}

#[test]
fn a_missing_component_is_reported_at_its_line() {
    let dir = scratch("missing-component");
    let wf = write(&dir, "wf.toml", "name = \"x\"\n[[steps]]\nname = \"a\"\ncomponent = \"nope.wasm\"\n");
    let o = tether(&["run", &wf]);
    assert_usage_error(
        &o,
        &[&format!("{wf}:4:13: step component `nope.wasm`"), "file not found", "hint: build the component first"],
    );
}

#[test]
fn a_file_that_is_not_a_component_is_a_usage_error() {
    let dir = scratch("not-a-component");
    let text = write(&dir, "text.wasm", "hello");
    std::fs::write(dir.join("core.wasm"), b"\0asm\x01\0\0\0").unwrap();
    let wf = write(&dir, "wf.toml", "name = \"x\"\n[[steps]]\nname = \"a\"\ncomponent = \"text.wasm\"\n[[steps]]\nname = \"b\"\ncomponent = \"core.wasm\"\n");
    let o = tether(&["run", &wf]);
    assert_usage_error(&o, &["not a WebAssembly file", "core WebAssembly module, not a component", ":4:13:", ":7:13:"]);
    let o = tether(&["inspect", &text]);
    assert_usage_error(&o, &["text.wasm: is not a WebAssembly file"]);
}

#[test]
fn a_component_of_the_wrong_world_is_a_usage_error() {
    let dir = scratch("wrong-world");
    let wf = write(
        &dir,
        "wf.toml",
        &format!("name = \"x\"\n[[steps]]\nname = \"a\"\ncomponent = {:?}\n", artifacts::ECHO_TOOL),
    );
    let o = tether(&["run", &wf]);
    assert_usage_error(&o, &["imports `tether:plugin/tool-host@0.1.0`, which only tools get"]);
    // A step declared as a tool: named by its import if it uses the host...
    let wf = write(
        &dir,
        "wf2.toml",
        &format!(
            "name = \"x\"\n[tools.t]\ncomponent = {:?}\n[[steps]]\nname = \"a\"\ncomponent = {:?}\n",
            artifacts::CLASSIFY,
            artifacts::TRIVIAL
        ),
    );
    let o = tether(&["run", &wf]);
    assert_usage_error(
        &o,
        &["wf2.toml:3:13: tool component", "imports `tether:plugin/host@0.1.0`, which only steps get"],
    );
    // ...and by its export if it imports nothing of ours.
    let wf = write(
        &dir,
        "wf3.toml",
        &format!(
            "name = \"x\"\n[tools.t]\ncomponent = {:?}\n[[steps]]\nname = \"a\"\ncomponent = {:?}\n",
            artifacts::TRIVIAL,
            artifacts::TRIVIAL
        ),
    );
    let o = tether(&["run", &wf]);
    assert_usage_error(&o, &["does not export `tether:plugin/tool@0.1.0`, so it is not a tool (it exports `tether:plugin/step@0.1.0`: it is a step; declare it as one)"]);
}

#[test]
fn help_teaches_and_unknown_flags_exit_2() {
    let o = tether(&["run", "--help"]);
    assert_eq!(o.status.code(), Some(0));
    let help = String::from_utf8_lossy(&o.stdout);
    assert!(help.contains("--input") && help.contains("@FILE") && help.contains("Exit code"), "{help}");
    let o = tether(&["run", "--frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn inspect_reports_world_fit_imports_and_digest() {
    let o = tether(&["inspect", artifacts::CLASSIFY, "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["world"], "step-plugin");
    assert_eq!(v["step"]["fits"], true);
    assert_eq!(v["tool"]["fits"], false);
    assert!(v["exports"].as_array().unwrap().iter().any(|e| e == "tether:plugin/step@0.1.0"));
    assert!(v["imports"].as_array().unwrap().iter().any(|e| e == "tether:plugin/host@0.1.0"));
    let bytes = std::fs::read(artifacts::CLASSIFY).unwrap();
    assert_eq!(v["size"], bytes.len());
    assert_eq!(v["sha256"].as_str().unwrap().len(), 64);

    let o = tether(&["inspect", artifacts::CUSTOMER_LOOKUP]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("world:   tool-plugin"), "{text}");
    assert!(text.contains("fits the step world: no, it imports `tether:plugin/tool-host@0.1.0`"), "{text}");
}

#[test]
fn validate_accepts_the_demo_and_lists_every_problem_of_a_bad_workflow() {
    let demo = repo_root().join("plugins/workflows/support-triage.toml");
    let o = tether(&["validate", demo.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("valid workflow `support-triage`: 5 steps, 1 tools, 0 loops"), "{out}");
    assert!(out.contains("route <- classify  [route to escalate | draft-reply]"), "{out}");
    assert!(out.contains("policy-check <- escalate, draft-reply"), "{out}");

    let dir = scratch("validate");
    let wf = write(
        &dir,
        "wf.toml",
        &format!(
            "name = \"v\"\n[tools.t]\ncomponent = {:?}\n[[steps]]\nname = \"a\"\ncomponent = \"missing.wasm\"\n[[steps]]\nname = \"b\"\ncomponent = {:?}\ntools = [\"t\"]\n",
            artifacts::CLASSIFY,
            artifacts::TRIVIAL
        ),
    );
    let o = tether(&["validate", &wf]);
    assert_usage_error(
        &o,
        &[":3:13: tool component", "which only steps get", ":6:13: step component `missing.wasm`", "2 problems"],
    );
    let o = tether(&["validate", &wf, "--json"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["problems"].as_array().unwrap().len(), 2);
    assert_eq!(v["problems"][1]["line"], 6);
    // Nothing ran and nothing was journaled (if no other test made the journal yet, there is none).
    let o = tether(&["runs", "--json"]);
    if o.status.code() == Some(0) {
        let runs: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert!(!runs.as_array().unwrap().iter().any(|r| r["workflow"] == "v"));
    } else {
        assert_usage_error(&o, &["no journal at"]);
    }
}

#[test]
fn a_guests_output_cannot_drive_the_terminal_through_json() {
    let dir = scratch("c1-output");
    let wf = write(
        &dir,
        "echo.toml",
        &format!("name = \"echo\"\n[[steps]]\nname = \"echo\"\ncomponent = {:?}\n", artifacts::HOSTILE),
    );
    // U+009B is a CSI on some terminals; JSON leaves it (and DEL) raw unless escaped.
    let input = "{\"mode\": \"echo\", \"text\": \"\\u009b2J\\u007f\\u001b[31m\"}";
    for extra in [&[][..], &["--json"][..]] {
        let mut args = vec!["run", &wf, "--input", input];
        args.extend_from_slice(extra);
        let o = tether(&args);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let out = String::from_utf8(o.stdout).unwrap();
        assert!(!out.chars().any(|c| c.is_control() && c != '\n'), "raw control characters on stdout: {out:?}");
        assert!(out.contains("\\u009b2J\\u007f\\u001b[31m"), "{out}");
    }
}

/// Runs tether, killing it (and failing) if it has not finished in 20 s: the files under
/// test used to make it read forever or block.
fn tether_within(args: &[&str]) -> Output {
    let mut child =
        command(args).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("tether {args:?} was still running after 20 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn devices_pipes_and_huge_files_are_refused_by_name_not_read() {
    let dir = scratch("files");
    let demo = repo_root().join("plugins/workflows/support-triage.toml").display().to_string();
    let fifo = dir.join("input.fifo");
    let _ = std::fs::remove_file(&fifo);
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let fifo = fifo.display().to_string();
    for input in ["/dev/zero", fifo.as_str()] {
        let o = tether_within(&["run", &demo, "--input", &format!("@{input}")]);
        assert_usage_error(&o, &[&format!("cannot read the input file {input}: is not a regular file")]);
    }
    let o = tether_within(&["run", "/dev/zero"]);
    assert_usage_error(&o, &["cannot read the workflow file /dev/zero: is not a regular file"]);
    let wf = write(&dir, "zero.toml", "name = \"zero\"\n[[steps]]\nname = \"z\"\ncomponent = \"/dev/zero\"\n");
    let o = tether_within(&["run", &wf]);
    assert_usage_error(&o, &[&format!("{wf}:4:13"), "is not a regular file"]);
    for args in [vec!["inspect", "/dev/zero"], vec!["plugin", "add", "/dev/zero", "--version", "1"]] {
        assert_usage_error(&tether_within(&args), &["/dev/zero: is not a regular file"]);
    }
    // A file above its kind's limit is named with its size and the limit.
    let big = write(&dir, "big.json", &format!("\"{}\"", "x".repeat(9 << 20)));
    let o = tether_within(&["run", &demo, "--input", &format!("@{big}")]);
    assert_usage_error(
        &o,
        &[&format!("cannot read the input file {big}: is 9.0 MiB; the limit for the input file is 8 MiB")],
    );
}

#[test]
fn reading_commands_never_create_a_journal() {
    let dir = scratch("no-journal");
    let missing = dir.join("typo").join("journl.db");
    let _ = std::fs::remove_dir_all(dir.join("typo"));
    let db = missing.display().to_string();
    for args in [
        vec!["runs", "--db", &db],
        vec!["history", "run_x", "--db", &db],
        vec!["inbox", "--db", &db],
        vec!["stats", "--db", &db],
        vec!["verify", "--db", &db],
        vec!["resume", "run_x", "--db", &db],
        vec!["plugin", "list", "--db", &db],
    ] {
        let o = tether(&args);
        assert_usage_error(&o, &["no journal at", "journl.db", "check --db or $TETHER_DATABASE_URL"]);
        assert!(!dir.join("typo").exists(), "{args:?} created {}", dir.join("typo").display());
    }
}

#[test]
fn a_journal_url_of_another_backend_is_refused_by_name_not_taken_for_a_path() {
    let dir = scratch("db-schemes");
    for (url, expected) in [
        ("mysql://localhost/tether", "`mysql:` is not a journal backend"),
        ("http://example.com/db", "`http:` is not a journal backend"),
        ("", "the journal URL is empty"),
    ] {
        // Through the flag and through the environment, for a command that would create.
        let wf = repo_root().join("plugins/workflows/support-triage.toml").display().to_string();
        let o = command(&["run", &wf, "--db", url]).current_dir(&dir).output().unwrap();
        assert_usage_error(&o, &[expected]);
        let o = command(&["runs"]).env("TETHER_DATABASE_URL", url).current_dir(&dir).output().unwrap();
        if url.is_empty() {
            // An empty variable means "not set": the default journal is used.
            continue;
        }
        assert_usage_error(&o, &[expected]);
    }
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "files were created: {left:?}");
}

#[test]
fn a_closed_pipe_ends_a_command_quietly() {
    let dir = scratch("closed-pipe");
    let db = dir.join("journal.db");
    let _ = std::fs::remove_file(&db);
    let demo = repo_root().join("plugins/workflows/support-triage.toml").display().to_string();
    let db_arg = db.display().to_string();
    let input = format!("@{}", repo_root().join("plugins/workflows/ticket.json").display());
    let o = tether(&["run", &demo, "--db", &db_arg, "--input", &input, "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let run: Value = serde_json::from_slice(&o.stdout).unwrap();
    let run = run["run_id"].as_str().unwrap().to_string();
    // `tether history RUN | head -0`: the reader is gone before anything is written.
    let mut child = command(&["history", &run, "--db", &db_arg])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    let err = stderr(&o);
    assert!(err.is_empty(), "a closed pipe printed: {err}");
    use std::os::unix::process::ExitStatusExt;
    const SIGPIPE: i32 = 13;
    assert_eq!(o.status.signal(), Some(SIGPIPE), "{:?}", o.status);
}

#[test]
fn identity_names_follow_the_policy_rule_everywhere() {
    let demo = repo_root().join("plugins/workflows/support-triage.toml").display().to_string();
    for name in ["", "tether", "deadline", "al ice", "alice\u{202e}", "Alice"] {
        let o = tether(&["run", &demo, "--as", name]);
        assert_usage_error(&o, &["identity name"]);
        let o = tether(&["approve", "run_x", "apr_x", "--as", name]);
        assert_usage_error(&o, &["identity name"]);
    }
}

#[test]
fn an_input_too_large_to_journal_is_a_usage_error_and_no_run_is_named() {
    let dir = scratch("input-too-large");
    let db = dir.join("journal.db");
    let _ = std::fs::remove_file(&db);
    // Under the 8 MiB input limit, but with the plan over the journal's 8 MiB event cap.
    let body = "y".repeat((8 << 20) - 2000);
    let input =
        write(&dir, "big.json", &serde_json::json!({"from": "a@b.c", "subject": "s", "body": body}).to_string());
    let demo = repo_root().join("plugins/workflows/support-triage.toml").display().to_string();
    let db_arg = db.display().to_string();
    let o = tether(&["run", &demo, "--db", &db_arg, "--input", &format!("@{input}")]);
    assert_usage_error(&o, &["the run input is", "above the journal's cap of 8388608", "pass large data by reference"]);
    assert!(!stderr(&o).contains("started"), "a run that never started is named: {}", stderr(&o));
    let o = tether(&["runs", "--db", &db_arg, "--json"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "[]");
}

#[test]
fn the_journal_flags_may_come_before_the_command() {
    let dir = scratch("db-first");
    let db = dir.join("journal.db");
    let _ = std::fs::remove_file(&db);
    let demo = repo_root().join("plugins/workflows/support-triage.toml").display().to_string();
    let input = format!("@{}", repo_root().join("plugins/workflows/ticket.json").display());
    let db_arg = db.display().to_string();
    let o = tether(&["--db", &db_arg, "--sync", "normal", "run", &demo, "--input", &input, "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let run: Value = serde_json::from_slice(&o.stdout).unwrap();
    let o = tether(&[&format!("--db={db_arg}"), "runs", "--json"]);
    let runs: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(runs[0]["run_id"], run["run_id"]);
    let o = tether(&["--db", &db_arg, "plugin", "list", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn the_first_compile_of_a_large_component_is_announced_once() {
    let cache = scratch("compile-notice").join("cache");
    let _ = std::fs::remove_dir_all(&cache);
    // A JavaScript component (1.6 MB); Rust ones are small and not announced.
    let component = artifacts::FORMAT_REPORT.to_string();
    let cache_arg = cache.display().to_string();
    let o = tether(&["inspect", &component, "--cache-dir", &cache_arg]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).starts_with("compiling component sha256:"), "{}", stderr(&o));
    assert!(stderr(&o).contains("MB); later runs load it from the cache"), "{}", stderr(&o));
    let o = tether(&["inspect", &component, "--cache-dir", &cache_arg]);
    assert!(!stderr(&o).contains("compiling"), "announced again: {}", stderr(&o));
}

#[test]
fn validate_json_places_policy_problems_in_the_policy_file_and_always_prints_json() {
    let dir = scratch("validate-policy");
    let policy = write(
        &dir,
        "policy.toml",
        "[identities.alice]\napproves = [\"refund\"]\n\n[gates.refund]\napprovals = \"two\"\n",
    );
    let wf = write(
        &dir,
        "wf.toml",
        &format!(
            "name = \"p\"\npolicy_file = \"policy.toml\"\n[[steps]]\nname = \"a\"\ncomponent = {:?}\n",
            artifacts::TRIVIAL
        ),
    );
    let o = tether(&["validate", &wf, "--json"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let problem = &v["problems"][0];
    assert_eq!(problem["file"], policy.as_str(), "{v}");
    assert_eq!((problem["line"].as_u64(), problem["column"].as_u64()), (Some(5), Some(13)), "{v}");

    // A file that cannot be read as text is still one JSON document.
    let bad = dir.join("latin1.toml");
    std::fs::write(&bad, b"name = \"caf\xe9\"\n").unwrap();
    for path in [bad.display().to_string(), dir.join("nowhere.toml").display().to_string()] {
        let o = tether(&["validate", &path, "--json"]);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("no JSON for {path}"));
        assert_eq!(v["valid"], false);
        assert_eq!(v["problems"][0]["file"], path.as_str());
        assert!(v["problems"][0]["message"].as_str().unwrap().contains(&path), "{v}");
    }
}

#[test]
fn shell_completions_cover_the_commands() {
    let o = tether(&["completions", "bash"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let script = String::from_utf8_lossy(&o.stdout);
    for command in ["run", "resume", "show", "history", "approve", "migrate", "plugin"] {
        assert!(script.contains(command), "{command} is not completed");
    }
    let o = tether(&["completions", "tcsh"]);
    assert_usage_error(&o, &["invalid value 'tcsh'"]);
    let o = tether(&["--version"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("tether "));
}

#[test]
fn with_json_an_error_is_json_on_stderr() {
    let dir = scratch("json-errors");
    let db = dir.join("journal.db").display().to_string();
    let _ = std::fs::remove_file(&db);
    let o = tether(&["runs", "--db", &db, "--json"]);
    assert_eq!(o.status.code(), Some(2));
    let err: Value = serde_json::from_slice(&o.stderr).unwrap_or_else(|_| panic!("not JSON: {}", stderr(&o)));
    assert_eq!(err["error"]["kind"], "usage");
    assert_eq!(err["error"]["exit_code"], 2);
    assert!(err["error"]["message"].as_str().unwrap().starts_with("no journal at"), "{err}");
    assert!(o.stdout.is_empty());
}

#[test]
fn migrate_and_backup_speak_json_too() {
    let dir = scratch("json-migrate-backup");
    let db = dir.join("journal.db");
    let copy = dir.join("copy.db");
    for f in [&db, &copy] {
        let _ = std::fs::remove_file(f);
    }
    let db_arg = db.display().to_string();
    let o = tether(&["migrate", "--db", &db_arg, "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((doc["journal"].as_str(), doc["ready"].as_bool()), (Some(db_arg.as_str()), Some(true)));
    let o = tether(&["backup", copy.to_str().unwrap(), "--db", &db_arg, "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(doc["bytes"].as_u64().unwrap() > 0, "{doc}");
}
