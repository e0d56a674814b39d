#[cfg(feature = "step")]
use crate::bindings::tether::plugin::host as imports;
#[cfg(feature = "tool")]
use crate::bindings::tether::plugin::tool_host as imports;
use crate::bindings::tether::plugin::types as wit;

/// Severity of a log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Debugging detail.
    Debug,
    /// Normal progress.
    Info,
    /// Something unexpected that was recovered from.
    Warn,
    /// Something failed.
    Error,
}

/// Writes a log line into the run's record. Lines are capped in size and number by the host.
pub fn log(level: Level, message: &str) {
    let level = match level {
        Level::Debug => wit::Level::Debug,
        Level::Info => wit::Level::Info,
        Level::Warn => wit::Level::Warn,
        Level::Error => wit::Level::Error,
    };
    imports::log(level, message);
}

/// Writes a `debug` line.
pub fn debug(message: &str) {
    log(Level::Debug, message)
}
/// Writes an `info` line.
pub fn info(message: &str) {
    log(Level::Info, message)
}
/// Writes a `warn` line.
pub fn warn(message: &str) {
    log(Level::Warn, message)
}
/// Writes an `error` line.
pub fn error(message: &str) {
    log(Level::Error, message)
}

/// Reports usage the host cannot see, such as model tokens or money. Amounts add up per
/// step and per run, and count against the run's budgets for that metric.
///
/// `metric` uses letters, digits, `_`, `.` and `-` (at most 64 characters) and `amount`
/// must be finite and not negative; anything else ends the step with class `trap`.
pub fn report_usage(metric: &str, amount: f64) {
    imports::report_usage(metric, amount);
}

/// The idempotency key of the current tool call: stable across retries, resumes and
/// replays. Perform an external effect at most once per key.
#[cfg(feature = "tool")]
pub fn idempotency_key() -> String {
    imports::idempotency_key()
}
