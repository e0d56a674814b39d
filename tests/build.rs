//! Builds every guest component in plugins/ (through scripts/build-plugins for Rust and
//! scripts/build-guests for Python, JavaScript and C, the same scripts the demo uses) and
//! emits one constant per component with its path, in the manner of wasmtime's
//! test-programs artifacts. The components are built in their own target directories, so
//! this never waits on the outer cargo's lock.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();
    for watched in
        ["plugins", "sdk/src", "sdk/c", "sdk/Cargo.toml", "wit", "scripts/build-plugins", "scripts/build-guests"]
    {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }

    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let adapter = out_dir.join("wasi_snapshot_preview1.reactor.wasm");
    std::fs::write(&adapter, wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER).unwrap();
    let mut stdout = build(&root, "scripts/build-plugins", &adapter);
    stdout.push_str(&build(&root, "scripts/build-guests", &adapter));
    let mut code = String::from("// Paths of the guest components built from plugins/.\n");
    for line in stdout.lines() {
        let mut parts = line.splitn(3, ' ');
        if let (Some("artifact"), Some(name), Some(path)) = (parts.next(), parts.next(), parts.next()) {
            let ident = name.to_uppercase().replace('-', "_");
            code.push_str(&format!("/// The `{name}` component.\npub const {ident}: &str = {path:?};\n"));
        }
    }
    std::fs::write(out_dir.join("artifacts.rs"), code).unwrap();
}

/// Runs one of the build scripts and returns its stdout (the `artifact` lines).
fn build(root: &Path, script: &str, adapter: &Path) -> String {
    let mut cmd = Command::new("bash");
    cmd.arg(root.join(script)).env("TETHER_PREVIEW1_ADAPTER", adapter);
    // Variables the outer cargo sets for this build script would leak into the inner
    // build (wrong flags, wrong target dir, a jobserver that is not ours).
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("CARGO_") && key != "CARGO_HOME" || key == "RUSTFLAGS" || key == "RUSTC_WRAPPER" {
            cmd.env_remove(key.as_ref());
        }
    }
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run bash {script}: {e}"));
    if !out.status.success() {
        panic!(
            "{script} failed:\n{}\n\n(If the wasm32-wasip2 target is missing: rustup target add wasm32-wasip2; \
             the other toolchains are installed by scripts/guest-toolchains)",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8(out.stdout).unwrap()
}
