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

/// What a crash campaign did, for its closing line.
#[derive(Default)]
pub struct Kills {
    /// SIGKILLs sent.
    pub sent: u32,
    /// Of those, how many caught the process still running.
    pub landed: u32,
    /// Runs submitted again because they were killed before their start was durable.
    pub resubmitted: u32,
}

/// Resumes `run` until a resume finishes (ends, waits or pauses) it, killing some of the
/// first resumes at a random delay below `max_delay_ms`; a run killed before its start was
/// durable is submitted again with `submit` (same id). Returns the finishing command's output.
pub fn resume_to_end(
    db: &Path,
    run: &str,
    rng: &mut Rng,
    max_delay_ms: u64,
    submit: impl Fn() -> std::process::Command,
    kills: &mut Kills,
) -> std::process::Output {
    use std::process::Stdio;
    for attempt in 0.. {
        assert!(attempt < 20, "run {run} did not end after 20 resumes");
        if attempt < 4 && rng.below(3) == 0 {
            let child = crate::support::tether_cmd(db)
                .args(["resume", run])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            kills.landed += u32::from(kill_after(child, Duration::from_millis(rng.below(max_delay_ms))));
            kills.sent += 1;
            continue;
        }
        let o = crate::support::tether_cmd(db).args(["resume", run, "--json"]).output().unwrap();
        if o.status.code() == Some(2) && String::from_utf8_lossy(&o.stderr).contains("unknown run") {
            kills.resubmitted += 1;
            return submit().output().unwrap();
        }
        return o;
    }
    unreachable!("the loop returns or fails")
}
