//! Helpers for the crash and damage tests: a seeded random generator, and test
//! directories private to this test process.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

/// xorshift64*: small, seeded, reproducible.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545F4914F6CDD1D)
    }
    /// A number in [0, n).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

pub fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// `$TETHER_CRASH_SEED`, or one from the clock.
pub fn seed() -> u64 {
    env_u64("TETHER_CRASH_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
    })
}

/// A fresh directory under target/test-dirs named after the test and this process, so
/// that two test processes running at once (two `cargo test`s) never share a journal.
/// Removed when dropped, unless the test failed (then it is kept to look at).
pub struct PrivateDir(PathBuf);

impl PrivateDir {
    pub fn new(name: &str) -> PrivateDir {
        PrivateDir(crate::support::fresh_dir(&format!("{name}-{}", std::process::id())))
    }
}

impl std::ops::Deref for PrivateDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept {} for inspection", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Kills `child` (SIGKILL) after `delay`; returns whether it was still running then.
pub fn kill_after(mut child: Child, delay: Duration) -> bool {
    std::thread::sleep(delay);
    let running = matches!(child.try_wait(), Ok(None));
    let _ = child.kill();
    let _ = child.wait();
    running
}

/// A hex-encoded file name (the example tools' `keys/`) back to the idempotency key.
pub fn unhex(name: &str) -> String {
    let bytes: Vec<u8> = (0..name.len()).step_by(2).map(|i| u8::from_str_radix(&name[i..i + 2], 16).unwrap()).collect();
    String::from_utf8(bytes).unwrap()
}
