//! Reading the files a user names (components, inputs, workflows, policies): only
//! regular files, and no more than a limit per kind, so `/dev/zero`, a FIFO or a huge
//! file is refused with its name and the limit instead of filling memory or blocking.

use std::io::Read;
use std::path::Path;

/// Largest component file accepted, in bytes.
pub const COMPONENT_LIMIT: u64 = 256 << 20;

/// Reads `path`, which must be a regular file of at most `limit` bytes. `Err` says what
/// is wrong in words that can follow the file's name ("file not found", "is a directory",
/// "is 300.0 MiB; the limit for a component is 256 MiB").
pub fn read_limited(path: &Path, limit: u64, what: &str) -> Result<Vec<u8>, String> {
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "file not found".to_string(),
        _ => format!("cannot read it: {e}"),
    })?;
    if meta.is_dir() {
        return Err(format!("is a directory, not {what}"));
    }
    if !meta.is_file() {
        return Err(format!("is not a regular file (a device, a pipe or a socket); {what} must be a file"));
    }
    if meta.len() > limit {
        return Err(too_large(meta.len(), limit, what));
    }
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read it: {e}"))?;
    read_up_to(file, limit, what)
}

/// Reads at most `limit` bytes from `from` (a stream such as stdin); more is an error.
pub fn read_up_to(from: impl Read, limit: u64, what: &str) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    from.take(limit + 1).read_to_end(&mut bytes).map_err(|e| format!("cannot read it: {e}"))?;
    if bytes.len() as u64 > limit {
        return Err(format!("holds more than {} bytes, the limit for {what}", limit));
    }
    Ok(bytes)
}

fn too_large(size: u64, limit: u64, what: &str) -> String {
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    format!("is {:.1} MiB; the limit for {what} is {:.0} MiB", mib(size), mib(limit))
}
