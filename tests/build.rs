//! Builds every guest component in plugins/ (through scripts/build-plugins, the same
//! script the demo uses) and emits one constant per component with its path, in the
//! manner of wasmtime's test-programs artifacts. The components are built in their own
//! target directory, so this never waits on the outer cargo's lock.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();
    for watched in ["plugins", "sdk/src", "sdk/Cargo.toml", "wit", "scripts/build-plugins"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }

    let mut cmd = Command::new("bash");
    cmd.arg(root.join("scripts/build-plugins"));
    // Variables the outer cargo sets for this build script would leak into the inner
    // build (wrong flags, wrong target dir, a jobserver that is not ours).
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("CARGO_") && key != "CARGO_HOME" || key == "RUSTFLAGS" || key == "RUSTC_WRAPPER" {
            cmd.env_remove(key.as_ref());
        }
    }
    let out = cmd.output().expect("cannot run bash scripts/build-plugins");
    if !out.status.success() {
        panic!(
            "building the guest components failed:\n{}\n\n(If the wasm32-wasip2 target is missing: rustup target add wasm32-wasip2)",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut code = String::from("// Paths of the guest components built from plugins/.\n");
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let mut parts = line.splitn(3, ' ');
        if let (Some("artifact"), Some(name), Some(path)) = (parts.next(), parts.next(), parts.next()) {
            let ident = name.to_uppercase().replace('-', "_");
            code.push_str(&format!("/// The `{name}` component.\npub const {ident}: &str = {path:?};\n"));
        }
    }
    let dest = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("artifacts.rs");
    std::fs::write(dest, code).unwrap();
}
