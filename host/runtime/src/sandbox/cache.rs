//! Compiled components on disk, so a component is compiled once per engine
//! configuration, not once per process. Entries are keyed by the wasm's sha256 and a
//! digest of the engine's compatibility hash: an artifact from another wasmtime version
//! or another configuration (fuel on or off, say) is never loaded.
//!
//! Each entry has a checksum file beside it (CRC-32 of the artifact, written before the
//! artifact is renamed into place). An entry whose checksum does not match (a torn write,
//! a disk error, a truncated copy) is removed and rebuilt, never loaded: wasmtime maps an
//! artifact's code as executable and trusts it. CRC-32 is for accidents, not attackers;
//! the directory is owner-only, and whoever can write it can already run code as us.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

/// What a [`CompileNotice`] calls: with a component's sha256 and its size in bytes.
pub type CompileFn = dyn Fn(&str, usize) + Send + Sync;

/// Called with a component's sha256 and size before it is compiled.
#[derive(Clone)]
pub struct CompileNotice(pub Arc<CompileFn>);

impl std::fmt::Debug for CompileNotice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CompileNotice")
    }
}

/// The on-disk cache of compiled components.
pub struct AotCache {
    dir: Option<PathBuf>,
    engine_key: String,
    on_compile: Option<CompileNotice>,
}

/// Feeds `Hash` output into sha256, giving a digest that is stable across processes.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

impl AotCache {
    /// `$TETHER_CACHE_DIR`, or the user's cache directory + `tether/aot`.
    pub fn default_dir() -> Option<PathBuf> {
        match std::env::var_os("TETHER_CACHE_DIR") {
            Some(d) if !d.is_empty() => Some(PathBuf::from(d)),
            _ => dirs::cache_dir().map(|d| d.join("tether").join("aot")),
        }
    }

    pub(crate) fn new(dir: Option<PathBuf>, engine: &Engine, on_compile: Option<CompileNotice>) -> AotCache {
        let mut h = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut h);
        let engine_key = hex::encode(&h.0.finalize()[..8]);
        AotCache { dir, engine_key, on_compile }
    }

    /// Where the compiled form of the component with sha256 `digest` lives (whether or not
    /// it is there yet); `None` without a cache directory.
    pub fn entry(&self, digest: &str) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(format!("{digest}-{}.cwasm", self.engine_key)))
    }

    /// The cached compiled component for sha256 `digest`, if there is a sound entry.
    /// A corrupted entry is removed (with a warning) so that it is rebuilt.
    pub(crate) fn cached(&self, engine: &Engine, digest: &str) -> Option<Component> {
        let path = self.entry(digest)?;
        let sum = checksum_path(&path);
        let expected = std::fs::read_to_string(&sum).ok()?;
        let verified = match file_checksum(&path) {
            Ok(sum) => format!("{sum:08x}") == expected.trim(),
            Err(_) => return None,
        };
        if !verified {
            tracing::warn!("cache entry {} is corrupted (checksum mismatch); rebuilding it", path.display());
            let _ = std::fs::remove_file(&path);
            let _ = std::fs::remove_file(&sum);
            return None;
        }
        match load_artifact(engine, &path) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!("ignoring unusable cache entry {}: {e:#}", path.display());
                None
            }
        }
    }

    /// The compiled component for `wasm` (whose sha256 is `digest`): from the cache if
    /// present and sound, otherwise compiled and stored. `Err` says why `wasm` is not a
    /// usable component.
    pub(crate) fn component(&self, engine: &Engine, wasm: &[u8], digest: &str) -> Result<Component, String> {
        if let Some(c) = self.cached(engine, digest) {
            return Ok(c);
        }
        check_header(wasm)?;
        if let Some(notice) = &self.on_compile {
            (notice.0)(digest, wasm.len());
        }
        let component = Component::new(engine, wasm).map_err(|e| {
            let e = format!("{e:#}");
            if e.contains("exceeds the configured maximum") {
                format!(
                    "needs more than a sandbox allows ({e}); a component may create at most {} core instances, {} memories and {} tables",
                    crate::sandbox::limits::MAX_CORE_INSTANCES,
                    crate::sandbox::limits::MAX_MEMORIES,
                    crate::sandbox::limits::MAX_TABLES
                )
            } else {
                format!("is not a valid component: {e}")
            }
        })?;
        if let Some(path) = self.entry(digest) {
            if let Err(e) = store_artifact(&component, &path) {
                tracing::warn!("could not write cache entry {}: {e:#}", path.display());
            }
        }
        Ok(component)
    }
}

#[allow(unsafe_code)]
fn load_artifact(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: `deserialize_file` trusts its input to be an artifact wasmtime produced.
    // Files in the cache directory are only ever written by `store_artifact` (created
    // owner-only, renamed into place complete, with a checksum the caller has verified)
    // and their names carry the engine's compatibility hash, so a file here was produced
    // by this engine configuration.
    unsafe { Component::deserialize_file(engine, path) }
}

fn store_artifact(component: &Component, path: &Path) -> anyhow::Result<()> {
    let dir = path.parent().expect("cache entries live in a directory");
    create_private_dir(dir)?;
    let bytes = component.serialize().map_err(|e| anyhow::anyhow!("{e}"))?;
    // Unique per process and per write, so concurrent writers never share a temp file.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{}-{n}.tmp", std::process::id()));
    let tmp_sum = dir.join(format!(".{}-{n}.sum.tmp", std::process::id()));
    std::fs::write(&tmp_sum, format!("{:08x}\n", crc32fast::hash(&bytes)))?;
    std::fs::write(&tmp, bytes)?;
    // The checksum first: a crash between the renames leaves a mismatch, which is rebuilt.
    std::fs::rename(&tmp_sum, checksum_path(path))?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// CRC-32 of a file, read in small chunks: an entry can be tens of MB, and reading it
/// whole would allocate and fault in that much memory on every process start.
fn file_checksum(path: &Path) -> std::io::Result<u32> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = crc32fast::Hasher::new();
    let mut chunk = vec![0u8; 256 << 10];
    loop {
        match file.read(&mut chunk)? {
            0 => return Ok(hasher.finalize()),
            n => hasher.update(&chunk[..n]),
        }
    }
}

fn checksum_path(entry: &Path) -> PathBuf {
    entry.with_extension("cwasm.sum")
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// A clear message for files that are not components at all.
fn check_header(wasm: &[u8]) -> Result<(), String> {
    if wasm.len() < 8 || &wasm[..4] != b"\0asm" {
        return Err("is not a WebAssembly file (it does not start with the `\\0asm` header)".into());
    }
    if wasm[4..8] == [1, 0, 0, 0] {
        return Err("is a core WebAssembly module, not a component; build it for the \
                    wasm32-wasip2 target, or wrap it with `wasm-tools component new`"
            .into());
    }
    Ok(())
}
