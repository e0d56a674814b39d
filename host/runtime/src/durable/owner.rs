//! This process as a lease owner, and whether another owner on this machine is gone.

use std::sync::OnceLock;

/// This process as a lease owner: `HOST/pid:PID/start:TICKS`. `HOST` is
/// `$TETHER_HOST_ID` or the machine's host name; the start time tells a live process
/// from a later one that reused its pid.
pub fn owner_id() -> &'static str {
    static OWNER: OnceLock<String> = OnceLock::new();
    OWNER.get_or_init(|| {
        let pid = std::process::id();
        format!("{}/pid:{pid}/start:{}", host_id(), start_ticks(pid).unwrap_or(0))
    })
}

fn host_id() -> String {
    match std::env::var("TETHER_HOST_ID") {
        Ok(h) if !h.trim().is_empty() => h.trim().to_string(),
        _ => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| std::fs::read_to_string("/etc/hostname"))
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into()),
    }
}

/// A running process's start time in clock ticks since boot (field 22 of
/// `/proc/PID/stat`); `None` if there is no such process or it has exited (a zombie).
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count after the last `)`.
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// Whether `owner` is a tether process on this machine that no longer runs. `false`
/// when that cannot be known (another machine, no `/proc`): its lease can be broken at
/// once rather than waited out.
pub fn known_dead(owner: &str) -> bool {
    let mut parts = owner.rsplitn(3, '/');
    let (Some(start), Some(pid), Some(host)) = (parts.next(), parts.next(), parts.next()) else { return false };
    let (Some(start), Some(pid)) = (start.strip_prefix("start:"), pid.strip_prefix("pid:")) else { return false };
    let (Ok(start), Ok(pid)) = (start.parse::<u64>(), pid.parse::<u32>()) else { return false };
    if host != host_id() || start == 0 || !std::path::Path::new("/proc/self/stat").exists() {
        return false;
    }
    start_ticks(pid) != Some(start)
}
