//! The plugin store through the CLI: `tether plugin add|list|show|remove`, workflows that
//! refer to `NAME@VERSION`, the AOT cache filled at add time (and a corrupted entry
//! rebuilt, not loaded), and every kind of bad input.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;
use tether_tests::artifacts;

use crate::support::fresh_dir;

/// A host with its own journal and its own cache directory (so what `plugin add` compiled
/// can be seen).
struct Host {
    dir: PathBuf,
}

impl Host {
    fn new(name: &str) -> Host {
        Host { dir: fresh_dir(name) }
    }

    fn cache(&self) -> PathBuf {
        self.dir.join("cache")
    }

    fn tether(&self, args: &[&str]) -> Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_tether"))
            .current_dir(&self.dir)
            .env("TETHER_CACHE_DIR", self.cache())
            .env("TETHER_DATABASE_URL", self.dir.join("journal.db"))
            .env_remove("RUST_BACKTRACE")
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs and expects `code`; returns stdout, stderr.
    fn expect(&self, code: i32, args: &[&str]) -> (String, String) {
        let o = self.tether(args);
        let (out, err) =
            (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned());
        assert_eq!(o.status.code(), Some(code), "tether {args:?}\nstdout:\n{out}\nstderr:\n{err}");
        (out, err)
    }

    fn json(&self, args: &[&str]) -> Value {
        let (out, _) = self.expect(0, args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("tether {args:?}: not JSON ({e}):\n{out}"))
    }

    /// The AOT cache entries (compiled components) for a digest.
    fn cache_entries(&self, digest: &str) -> Vec<PathBuf> {
        let Ok(dir) = std::fs::read_dir(self.cache()) else { return Vec::new() };
        let mut entries: Vec<PathBuf> = dir
            .map(|e| e.unwrap().path())
            .filter(|p| {
                let name = p.file_name().unwrap().to_string_lossy();
                name.starts_with(digest) && name.ends_with(".cwasm")
            })
            .collect();
        entries.sort();
        entries
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

fn sha256_of(path: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

const REDACT_WORKFLOW: &str = r#"name = "redact-deployed"
[tools.word-count]
component = "word-count@1.0.0"
[[steps]]
name = "redact"
component = "redact@1.0.0"
tools = ["word-count"]
"#;

#[test]
fn added_plugins_are_listed_shown_precompiled_and_run_by_name() {
    let host = Host::new("plugins-add");
    let digest = sha256_of(artifacts::REDACT);
    assert!(host.cache_entries(&digest).is_empty());
    let added = host.json(&["plugin", "add", artifacts::REDACT, "--version", "1.0.0", "--json"]);
    assert_eq!((added["name"].as_str(), added["version"].as_str()), (Some("redact"), Some("1.0.0")));
    assert_eq!((added["world"].as_str(), added["added"].as_bool()), (Some("step-plugin"), Some(true)));
    assert_eq!(added["digest"], digest.as_str());
    assert_eq!(added["size"], std::fs::metadata(artifacts::REDACT).unwrap().len());
    let processed_by = added["metadata"]["producers"]["processed-by"].as_array().unwrap();
    assert!(processed_by.iter().any(|p| p.as_str().unwrap().starts_with("wit-bindgen-c")), "{processed_by:?}");
    assert_eq!(host.cache_entries(&digest).len(), 1, "compiled into the cache when added");

    host.expect(0, &["plugin", "add", artifacts::WORD_COUNT, "--name", "word-count", "--version", "1.0.0"]);
    // The same file again under the same name and version changes nothing.
    let (out, _) = host.expect(0, &["plugin", "add", artifacts::REDACT, "--version", "1.0.0"]);
    assert!(out.contains("already deployed"), "{out}");

    let list = host.json(&["plugin", "list", "--json"]);
    let refs: Vec<String> =
        list.as_array().unwrap().iter().map(|p| format!("{}@{}", p["name"], p["version"])).collect();
    assert_eq!(refs, [r#""redact"@"1.0.0""#, r#""word-count"@"1.0.0""#]);
    let (text, _) = host.expect(0, &["plugin", "list"]);
    assert!(text.contains("redact@1.0.0") && text.contains("step-plugin") && text.contains("tool-plugin"), "{text}");
    let shown = host.json(&["plugin", "show", "word-count@1.0.0", "--json"]);
    assert_eq!(
        (shown[0]["world"].as_str(), shown[0]["digest"].as_str()),
        (Some("tool-plugin"), Some(sha256_of(artifacts::WORD_COUNT).as_str()))
    );
    let (text, _) = host.expect(0, &["plugin", "show", "redact"]);
    assert!(text.contains(&format!("sha256:   {digest}")), "{text}");

    host.write("wf.toml", REDACT_WORKFLOW);
    let report = host.json(&["run", "wf.toml", "--input", r#"{"text": "call 5551234567"}"#, "--json"]);
    assert_eq!(report["output"]["text"], "call [number]");
    let run_id = report["run_id"].as_str().unwrap();
    let (replayed, _) = host.expect(0, &["replay", run_id]);
    assert!(replayed.contains("matched"), "a run of deployed plugins replays: {replayed}");
    let (validated, _) = host.expect(0, &["validate", "wf.toml", "--json"]);
    let plan: Value = serde_json::from_str(&validated).unwrap();
    assert_eq!(plan["plan"]["steps"][0]["component"], digest.as_str(), "the plan pins the digest");
}

#[test]
fn a_digest_this_journal_does_not_hold_is_refused_even_if_compiled() {
    let host = Host::new("plugins-other-journal");
    host.expect(0, &["plugin", "add", artifacts::WORD_COUNT, "--version", "1.0.0"]);
    let digest = sha256_of(artifacts::REDACT);
    host.expect(0, &["plugin", "add", artifacts::REDACT, "--version", "1.0.0"]);
    // A second journal sharing the cache, where the compiled form of `redact` is.
    let other = host.dir.join("other.db");
    host.write("by-digest.toml", &format!("name = \"d\"\n[[steps]]\nname = \"s\"\ncomponent = \"sha256:{digest}\"\n"));
    let (_, err) = host.expect(2, &["run", "by-digest.toml", "--db", other.to_str().unwrap()]);
    assert!(err.contains("no component with this digest is stored in the journal"), "{err}");
    // In the journal that holds it, it loads and runs (and fails only for want of its tool).
    let (_, err) = host.expect(1, &["run", "by-digest.toml", "--input", r#"{"text": "x"}"#]);
    assert!(err.contains("tool `word-count` is not granted to step `s`"), "{err}");
}

#[test]
fn a_missing_plugin_is_a_positioned_error() {
    let host = Host::new("plugins-missing");
    host.write("wf.toml", REDACT_WORKFLOW);
    let (_, err) = host.expect(2, &["run", "wf.toml"]);
    assert!(err.contains("wf.toml:3:13") && err.contains("word-count@1.0.0") && err.contains("no plugin"), "{err}");
    host.write("bad.toml", "name = \"b\"\n[[steps]]\nname = \"s\"\ncomponent = \"Redact@1\"\n");
    let (_, err) = host.expect(2, &["validate", "bad.toml"]);
    assert!(err.contains("bad.toml:4:13") && err.contains("not a valid plugin name"), "{err}");
}

#[test]
fn bad_components_and_conflicting_versions_are_refused() {
    let host = Host::new("plugins-bad");
    let readme = tether_tests::repo_root().join("README.md");
    let (_, err) = host.expect(2, &["plugin", "add", readme.to_str().unwrap(), "--name", "readme", "--version", "1"]);
    assert!(err.contains("README.md: is not a WebAssembly file"), "{err}");
    let core = Path::new(artifacts::REDACT).with_extension("core.wasm");
    let (_, err) = host.expect(2, &["plugin", "add", core.to_str().unwrap(), "--name", "core", "--version", "1"]);
    assert!(err.contains("is a core WebAssembly module, not a component"), "{err}");
    let foreign = host.dir.join("foreign.wasm");
    std::fs::write(&foreign, wat::parse_str(r#"(component (import "acme:secrets/vault@1.0.0" (instance)))"#).unwrap())
        .unwrap();
    let (_, err) = host.expect(2, &["plugin", "add", foreign.to_str().unwrap(), "--version", "1"]);
    assert!(err.contains("fits neither tether world"), "{err}");
    assert!(err.contains("imports `acme:secrets/vault@1.0.0`, which tether does not provide to a step"), "{err}");
    let (_, err) = host.expect(2, &["plugin", "add", artifacts::WORD_COUNT]);
    assert!(err.contains("--version"), "a version is required: {err}");
    let (_, err) = host.expect(2, &["plugin", "add", artifacts::WORD_COUNT, "--name", "Bad Name", "--version", "1"]);
    assert!(err.contains("--name: `Bad Name` is not a valid plugin name"), "{err}");

    host.expect(0, &["plugin", "add", artifacts::WORD_COUNT, "--name", "counter", "--version", "1.0.0"]);
    let (_, err) = host.expect(2, &["plugin", "add", artifacts::REDACT, "--name", "counter", "--version", "1.0.0"]);
    assert!(err.contains("counter@1.0.0 already exists with digest sha256:"), "{err}");
    let list = host.json(&["plugin", "list", "--json"]);
    assert_eq!(list.as_array().unwrap().len(), 1, "nothing was added: {list}");
    assert_eq!(list[0]["digest"], sha256_of(artifacts::WORD_COUNT).as_str());
    let (_, err) = host.expect(2, &["plugin", "show", "nothing@1"]);
    assert!(err.contains("no plugin nothing@1"), "{err}");
    let (_, err) = host.expect(2, &["plugin", "remove", "counter"]);
    assert!(err.contains("NAME@VERSION"), "{err}");
    // Removing a plugin no run used still keeps its bytes (a run may be about to start).
    let removed = host.json(&["plugin", "remove", "counter@1.0.0", "--json"]);
    assert_eq!(removed["removed"], "counter@1.0.0", "{removed}");
    let digest = sha256_of(artifacts::WORD_COUNT);
    host.write(
        "by-digest.toml",
        &format!(
            "name = \"d\"\n[tools.t]\ncomponent = \"sha256:{digest}\"\n[[steps]]\nname = \"s\"\ncomponent = \"{}\"\n",
            artifacts::REDACT
        ),
    );
    host.expect(0, &["validate", "by-digest.toml"]);
}

#[test]
fn a_corrupted_cache_entry_is_rebuilt_not_loaded() {
    let host = Host::new("plugins-corrupt");
    host.expect(0, &["plugin", "add", artifacts::REDACT, "--version", "1.0.0"]);
    host.expect(0, &["plugin", "add", artifacts::WORD_COUNT, "--version", "1.0.0"]);
    let entry = host.cache_entries(&sha256_of(artifacts::REDACT)).remove(0);
    let good = std::fs::read(&entry).unwrap();
    let mut bad = good.clone();
    let middle = bad.len() / 2;
    for b in &mut bad[middle..middle + 64] {
        *b ^= 0x5a;
    }
    std::fs::write(&entry, &bad).unwrap();
    host.write("wf.toml", REDACT_WORKFLOW);
    let (out, err) = host.expect(0, &["run", "wf.toml", "--input", r#"{"text": "mail a@b.example"}"#, "--json"]);
    assert!(out.contains("[email]"), "{out}");
    assert!(err.contains("corrupted") && err.contains("rebuilding"), "the user is told: {err}");
    assert_eq!(std::fs::read(&entry).unwrap(), good, "the entry was rebuilt");
    // A truncated entry too.
    std::fs::write(&entry, &good[..good.len() / 3]).unwrap();
    host.expect(0, &["run", "wf.toml", "--input", r#"{"text": "x"}"#]);
    assert_eq!(std::fs::read(&entry).unwrap(), good);
}

#[test]
fn a_plugin_pinned_by_an_unfinished_run_is_not_removed() {
    let host = Host::new("plugins-remove");
    host.expect(0, &["plugin", "add", artifacts::REDACT, "--version", "1.0.0"]);
    host.expect(0, &["plugin", "add", artifacts::WORD_COUNT, "--version", "1.0.0"]);
    host.expect(0, &["plugin", "add", artifacts::WORD_COUNT, "--version", "2.0.0"]);
    host.write(
        "wf.toml",
        &format!(
            "{REDACT_WORKFLOW}approval = {{ gate = \"review\" }}\n\
             [policy.identities.bot]\ntools = [\"word-count\"]\n[policy.identities.alice]\napproves = [\"review\"]\n\
             [policy.gates.review]\napprovals = 1\n"
        ),
    );
    host.expect(3, &["run", "wf.toml", "--as", "bot", "--run-id", "run_pinned", "--input", r#"{"text": "x"}"#]);
    let (_, err) = host.expect(2, &["plugin", "remove", "redact@1.0.0"]);
    assert!(err.contains("pinned by 1 unfinished run(s): run_pinned"), "{err}");
    let (_, err) = host.expect(2, &["plugin", "remove", "word-count@1.0.0"]);
    assert!(err.contains("run_pinned"), "a tool is pinned too: {err}");
    // word-count 2.0.0 is the same component as 1.0.0: also pinned.
    host.expect(2, &["plugin", "remove", "word-count@2.0.0"]);
    // A journal written before runs recorded their components learns them from the
    // plans when it is migrated: the pins hold.
    let db = host.dir.join("journal.db").display().to_string();
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(tether_store::testing::before_run_components(&db));
    let (_, err) = host.expect(2, &["plugin", "remove", "redact@1.0.0"]);
    assert!(err.contains("pinned by 1 unfinished run(s): run_pinned"), "after migrating: {err}");
    let (_, err) = host.expect(2, &["plugin", "remove", "word-count@1.0.0"]);
    assert!(err.contains("run_pinned"), "after migrating, a tool is pinned too: {err}");

    // The rejection is recorded (exit 0); the run it continues fails and is finished.
    host.expect(0, &["reject", "run_pinned", "review", "--as", "alice"]);
    let (out, _) = host.expect(0, &["plugin", "remove", "redact@1.0.0"]);
    assert!(out.contains("removed redact@1.0.0"), "{out}");
    let (_, err) = host.expect(2, &["plugin", "remove", "redact@1.0.0"]);
    assert!(err.contains("no plugin redact@1.0.0"), "{err}");
    let list = host.json(&["plugin", "list", "--json"]);
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
    // The component's bytes stay: the finished run's plan can still be loaded by digest.
    let digest = sha256_of(artifacts::REDACT);
    host.write("by-digest.toml", &format!("name = \"d\"\n[[steps]]\nname = \"s\"\ncomponent = \"sha256:{digest}\"\n"));
    host.expect(0, &["validate", "by-digest.toml"]);
}
