//! Helpers for the crash and damage tests: a seeded random generator, and test
//! directories private to this test process.

use std::path::{Path, PathBuf};

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
