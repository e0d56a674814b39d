//! Human-readable output. Data goes to stdout, progress and logs to stderr. Anything a
//! guest wrote is sanitized before it reaches a terminal.

use tether_types::{LogLevel, RunReport, RunStatus, StepReport};

/// Replaces control characters (ANSI escapes included) so guest text cannot drive the terminal.
pub(crate) fn sanitize(text: &str) -> String {
    text.chars().map(|c| if c.is_control() && c != '\t' { '\u{FFFD}' } else { c }).collect()
}

/// JSON for stdout, pretty-printed, with the control characters JSON leaves raw (DEL and
/// C1, U+0080-U+009F: U+009B is a CSI on some terminals) escaped as `\u00XX`. Still the
/// same JSON to a parser; nothing a guest wrote can drive the terminal it is printed on.
pub(crate) fn json<T: serde::Serialize + ?Sized>(value: &T) -> String {
    let text = serde_json::to_string_pretty(value).expect("JSON values serialize");
    if !text.chars().any(|c| c == '\u{7f}' || ('\u{80}'..='\u{9f}').contains(&c)) {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if c == '\u{7f}' || ('\u{80}'..='\u{9f}').contains(&c) {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

pub(crate) fn fuel(units: u64) -> String {
    match units {
        u if u >= 1_000_000_000 => format!("{:.2}G", u as f64 / 1e9),
        u if u >= 1_000_000 => format!("{:.2}M", u as f64 / 1e6),
        u if u >= 1_000 => format!("{:.1}k", u as f64 / 1e3),
        u => u.to_string(),
    }
}

pub(crate) fn micros(us: u64) -> String {
    match us {
        u if u >= 1_000_000 => format!("{:.2}s", u as f64 / 1e6),
        u if u >= 1_000 => format!("{:.1}ms", u as f64 / 1e3),
        u => format!("{u}µs"),
    }
}

pub(crate) fn step_started(index: usize, total: usize, name: &str) {
    eprint!("[{}/{total}] {name} ...\r", index + 1);
}

pub(crate) fn step_finished(index: usize, total: usize, report: &StepReport, verbose: bool, tty: bool) {
    let s = &report.stats;
    let clear = if tty { "\x1b[2K" } else { "" };
    if report.outcome == RunStatus::Skipped {
        let why = s.logs.first().map(|l| sanitize(&l.message)).unwrap_or_default();
        eprintln!("{clear}[{}/{total}] {}  {why}", index + 1, report.name);
        return;
    }
    let outcome = match &report.error {
        None => "completed".to_string(),
        Some(f) => format!("failed: {}", f.class),
    };
    let tools = if s.tool_calls.is_empty() { String::new() } else { format!(", {} tool calls", s.tool_calls.len()) };
    eprintln!(
        "{clear}[{}/{total}] {}  {outcome}  fuel {}  time {}{tools}",
        index + 1,
        report.name,
        fuel(s.total_fuel()),
        micros(s.wall_us)
    );
    for line in &s.logs {
        if verbose || line.level >= LogLevel::Warn {
            let from = line.tool.as_deref().map(|t| format!("tool {t} ")).unwrap_or_default();
            eprintln!("      {:<5} {from}{}: {}", line.level.as_str(), line.stream, sanitize(&line.message));
        }
    }
    if s.logs_dropped > 0 {
        eprintln!("      ({} log lines dropped: cap reached)", s.logs_dropped);
    }
    if let Some(f) = &report.error {
        eprintln!("      {}", sanitize(&f.message));
    }
}

/// After a step's line: which attempt it was, past the first, and when it is retried.
pub(crate) fn attempt_note(attempt: u32, retry_in: Option<std::time::Duration>) {
    match retry_in {
        Some(wait) => {
            eprintln!("      attempt {attempt} failed; attempt {} in {}", attempt + 1, micros(wait.as_micros() as u64))
        }
        None if attempt > 1 => eprintln!("      (attempt {attempt})"),
        None => {}
    }
}

pub(crate) fn run_summary(report: &RunReport) {
    if let Some(e) = report.error.as_ref().filter(|e| e.class == tether_types::FailureClass::Cancelled) {
        let undone = match report.status {
            RunStatus::Compensated => "; its completed steps were undone",
            RunStatus::CompensationFailed => "; undoing a completed step failed (see `tether history`)",
            _ => "",
        };
        eprintln!("run {} {}{undone}", report.run_id, sanitize(&e.message));
        return;
    }
    match report.status {
        RunStatus::Completed => {
            println!("{}", json(&report.output));
            eprintln!(
                "run {} completed: {} steps, fuel {}, {}",
                report.run_id,
                report.steps.len(),
                fuel(report.totals.fuel),
                micros(report.totals.wall_us)
            );
        }
        RunStatus::Failed => {
            if let Some(e) = &report.error {
                eprintln!("run {} failed at step `{}`: {}: {}", report.run_id, e.step, e.class, sanitize(&e.message));
            }
        }
        RunStatus::Compensated | RunStatus::CompensationFailed => {
            if let Some(e) = &report.error {
                let how = if report.status == RunStatus::Compensated { "compensated" } else { "compensation failed" };
                eprintln!(
                    "run {} failed at step `{}` ({how}): {}: {}",
                    report.run_id,
                    e.step,
                    e.class,
                    sanitize(&e.message)
                );
            }
        }
        RunStatus::Skipped => {}
        RunStatus::Waiting => {
            if let Some(e) = &report.error {
                eprintln!("run {} is waiting: {}", report.run_id, sanitize(&e.message));
            }
        }
        RunStatus::Paused => {
            if let Some(e) = &report.error {
                eprintln!("run {} paused at step `{}`: {}", report.run_id, e.step, sanitize(&e.message));
            }
        }
    }
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) from microseconds since the epoch.
/// A byte count for people: `18.4 MB`, `59.7 KB`, `512 B`.
pub(crate) fn bytes(n: u64) -> String {
    match n {
        n if n >= 1_000_000 => format!("{:.1} MB", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.1} KB", n as f64 / 1e3),
        n => format!("{n} B"),
    }
}

/// Now, in microseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_us() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

pub(crate) use tether_types::units::{rfc3339, utc};

/// The terminal's width in columns, if stdout is a terminal.
#[allow(unsafe_code)]
pub(crate) fn terminal_width() -> Option<usize> {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() {
        return None;
    }
    let mut size = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ writes one `winsize` into the struct passed; stdout is open.
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) } == 0;
    (ok && size.ws_col > 0).then_some(size.ws_col as usize)
}

/// `line` cut to `width` characters (marked with `…`), if there is a width.
pub(crate) fn fit(line: String, width: Option<usize>) -> String {
    match width {
        Some(w) if line.chars().count() > w && w > 1 => {
            let mut cut: String = line.chars().take(w - 1).collect();
            cut.push('…');
            cut
        }
        _ => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_text_cannot_drive_the_terminal() {
        let hostile = "ok\x1b[2J\x1b]0;pwned\x07\rdone\ttab";
        let clean = sanitize(hostile);
        assert!(!clean.chars().any(|c| c.is_control() && c != '\t'), "{clean:?}");
        assert!(clean.starts_with("ok\u{FFFD}[2J") && clean.ends_with("done\ttab"));
    }

    #[test]
    fn json_output_escapes_what_json_leaves_raw() {
        let hostile = serde_json::json!({"text": "a\u{9b}31mred\u{7f}\u{1b}[2J é"});
        let text = json(&hostile);
        assert!(!text.chars().any(|c| c.is_control() && c != '\n'), "{text:?}");
        assert!(text.contains("a\\u009b31mred\\u007f\\u001b[2J é"), "{text}");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&text).unwrap(), hostile, "the same JSON to a parser");
    }

    #[test]
    fn figures_are_short_and_readable() {
        assert_eq!(fuel(73_041), "73.0k");
        assert_eq!(fuel(2_500_000_000), "2.50G");
        assert_eq!(micros(442), "442µs");
        assert_eq!(micros(1_500), "1.5ms");
    }
}
