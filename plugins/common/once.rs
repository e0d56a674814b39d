//! An external effect at most once per idempotency key, for the example tools, in a
//! granted directory `DIR`:
//!
//! - The effect's record is `DIR/keys/<key in hex>`, holding one line (the result). It is
//!   made atomically and whole: written to a scratch file, then hard-linked into place,
//!   which fails if the name exists. However many calls are made with one key (retries,
//!   resumes after the host was killed, two hosts at once), exactly one link succeeds, and
//!   only that call acts; the others return the recorded result.
//! - The effect itself is appended to an aggregate log after the record is in place. A
//!   kill between the two leaves the line out; the next call with the key (a resumed run
//!   always makes it, since the call's result was never journaled) finds the record
//!   without its line and appends it. The run's lease keeps two calls with one key from
//!   running at once, so that repair does not race.

use std::io::{ErrorKind, Write};

use tether_sdk::Failure;

fn io_failure(what: &str, path: &str, e: std::io::Error) -> Failure {
    Failure::transient(format!("cannot {what} {path}: {e}"))
}

/// What a call with `key` should do.
pub enum Claim {
    /// This call recorded `line` as the key's result first: it performs the effect.
    Won,
    /// An earlier call recorded this result.
    Recorded(String),
}

/// Records `result` (one line, no newline) as `key`'s result under `dir/keys`, unless a
/// result is recorded already.
pub fn claim(dir: &str, key: &str, result: &str) -> Result<Claim, Failure> {
    let keys = format!("{dir}/keys");
    match std::fs::create_dir(&keys) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_failure("create", &keys, e)),
    }
    let name: String = key.bytes().map(|b| format!("{b:02x}")).collect();
    let path = format!("{keys}/{name}");
    let scratch = format!("{keys}/.{name}.new");
    let mut file = std::fs::File::create(&scratch).map_err(|e| io_failure("create", &scratch, e))?;
    file.write_all(format!("{result}\n").as_bytes()).map_err(|e| io_failure("write", &scratch, e))?;
    file.sync_all().map_err(|e| io_failure("sync", &scratch, e))?;
    let linked = std::fs::hard_link(&scratch, &path);
    let _ = std::fs::remove_file(&scratch);
    match linked {
        Ok(()) => Ok(Claim::Won),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(&path).map_err(|e| io_failure("read", &path, e))?;
            Ok(Claim::Recorded(text.trim_end_matches('\n').to_string()))
        }
        Err(e) => Err(io_failure("record", &path, e)),
    }
}

/// Appends `line` (with its newline) to the aggregate log at `path`, unless a line for
/// `key` (`KEY\t...`) is there already.
pub fn log_once(path: &str, key: &str, line: &str) -> Result<(), Failure> {
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io_failure("read", path, e)),
    };
    if existing.lines().any(|l| l.split('\t').next() == Some(key)) {
        return Ok(());
    }
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| io_failure("open", path, e))?;
    log.write_all(line.as_bytes()).map_err(|e| io_failure("write", path, e))?;
    log.sync_all().map_err(|e| io_failure("sync", path, e))
}
