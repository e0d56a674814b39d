//! What every store holds, whatever runs in it: a WASI context with nothing granted, the
//! memory limiter, the captured stdio, and the record of what the guest did (logs,
//! usage, tool calls).
//!
//! The store's data type itself is defined where an attempt is assembled, because it
//! also carries what the layers above need (the tape, the step's grants). It holds a
//! [`Sandbox`] and implements [`SandboxView`], as wasmtime-wasi's stores implement
//! `WasiView`: the functions here are generic over it, and its hooks let the layer
//! above see (and journal) what the guest does without this one knowing how.

use std::collections::BTreeMap;
use std::sync::Arc;

use tether_types::plan::DirGrant;
use tether_types::{FailureClass, LogLevel, LogLine, StepStats, ToolCallReport};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::redact::redact;
use crate::sandbox::limits::MemoryLimiter;
use crate::sandbox::pipe::CappedPipe;

/// Bytes of stdout and of stderr kept per sandbox.
pub(crate) const STDIO_CAP: usize = 64 << 10;
/// Longest log line kept; longer lines are cut and marked.
const LOG_LINE_CAP: usize = 4 << 10;
/// Log lines kept per step attempt (tool calls included).
const LOG_LINES_CAP: usize = 1000;
/// Distinct usage metrics per step attempt.
const USAGE_METRICS_CAP: usize = 64;
/// Largest amount one usage report may carry. With at most USAGE_REPORTS_CAP reports per
/// attempt, no step's or run's total can become too large for an f64 to count.
pub(crate) const MAX_USAGE_AMOUNT: f64 = 1e15;
/// Usage reports per attempt: each is a journal event.
pub(crate) const USAGE_REPORTS_CAP: u32 = 10_000;
/// Resource handles (streams, files, pollables) a sandbox may hold at once; wasmtime's
/// default of a million would let a guest that leaks them hold hundreds of MiB of host
/// memory.
pub(crate) const RESOURCE_HANDLES_CAP: usize = 10_000;
/// Most random bytes one call may ask for unless the setup says otherwise (tools);
/// wasmtime-wasi's default is 64 MiB.
const DEFAULT_RANDOM_CAP: u64 = 1 << 20;

/// The part of a store's data that is the same for every guest.
pub(crate) struct Sandbox {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) stdout: CappedPipe,
    pub(crate) stderr: CappedPipe,
    pub(crate) record: Record,
    /// Set by a host function that ends the attempt for a budget reason, so the trap it
    /// raises is classified by cause rather than by message.
    pub(crate) tripped: Option<(FailureClass, String)>,
    /// Secure random bytes the guest may ask for: in one call of wasmtime-wasi's own
    /// random functions, and in all (a step's `random_bytes` budget).
    pub(crate) random_bytes: u64,
    /// Usage the guest may still report, per metric, before the run's budget runs out.
    pub(crate) usage_limits: BTreeMap<String, f64>,
    /// Values of granted secrets, redacted from every log line.
    pub(crate) secrets: Arc<Vec<String>>,
}

/// How to set up one sandbox.
pub(crate) struct Setup {
    pub(crate) dirs: Vec<DirGrant>,
    /// Granted environment variables.
    pub(crate) env: Vec<(String, String)>,
    pub(crate) secrets: Arc<Vec<String>>,
    /// See [`Sandbox::random_bytes`].
    pub(crate) random_bytes: u64,
    /// See [`Sandbox::usage_limits`].
    pub(crate) usage_limits: BTreeMap<String, f64>,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            dirs: Vec::new(),
            env: Vec::new(),
            secrets: Arc::default(),
            random_bytes: DEFAULT_RANDOM_CAP,
            usage_limits: BTreeMap::new(),
        }
    }
}

/// What the guest did, accumulated during the attempt.
#[derive(Default)]
pub(crate) struct Record {
    pub(crate) logs: Vec<LogLine>,
    pub(crate) logs_dropped: u64,
    pub(crate) usage: BTreeMap<String, f64>,
    pub(crate) usage_reports: u32,
    pub(crate) tool_calls: Vec<ToolCallReport>,
    pub(crate) tool_fuel: u64,
    /// Model calls made (served ones included).
    pub(crate) model_calls: u32,
}

/// A store's data that holds a [`Sandbox`]. The hooks default to nothing: a store without
/// a layer above (a tool's) only keeps its record.
pub(crate) trait SandboxView: WasiView + 'static {
    /// The sandbox.
    fn sandbox(&mut self) -> &mut Sandbox;

    /// The sandbox, to read.
    fn sandbox_ref(&self) -> &Sandbox;

    /// A line the record keeps, redacted and not yet cut to length. `output`: a line of
    /// stdout or stderr, or a notice of what was dropped, given when the attempt ends.
    fn kept_line(&mut self, _line: &LogLine, _output: bool) {}

    /// A usage report the record accepted.
    fn reported_usage(&mut self, _metric: &str, _amount: f64) {}

    /// Why the guest must stop, for a reason the layer above knows (execution left what
    /// it was to follow): a host fault, which trumps how the guest then ends.
    fn halted(&self) -> Option<String> {
        None
    }

    /// Why the attempt must stop for a budget or a doubt counted outside the guest's
    /// own calls (clock and random reads where they are served, HTTP requests running
    /// beside it), with the class to end it with: checked at every epoch tick and when
    /// the attempt ends.
    fn over_budget(&self) -> Option<(FailureClass, String)> {
        None
    }

    /// Notified when something beside the guest (an HTTP request) must stop the attempt
    /// at once, even while the guest is blocked in a host call; [`Self::over_budget`]
    /// then says why.
    fn stop_signal(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        None
    }
}

impl Sandbox {
    /// `Err` if a granted directory cannot be opened. `wasi` may change the context's
    /// clocks and random numbers before it is built.
    pub(crate) fn new(memory_cap: u64, setup: Setup, wasi: impl FnOnce(&mut WasiCtxBuilder)) -> Result<Self, String> {
        let stdout = CappedPipe::new(STDIO_CAP);
        let stderr = CappedPipe::new(STDIO_CAP);
        // Nothing is granted unless the setup says so: no env, args, network or inherited
        // stdio; directories only as granted. Only the capped in-memory stdout/stderr.
        let mut builder = WasiCtxBuilder::new();
        builder.stdout(stdout.clone()).stderr(stderr.clone());
        // Bounds one call of the random functions wasmtime-wasi serves itself (insecure
        // random for steps, all random for tools) before it allocates.
        builder.max_random_size(setup.random_bytes);
        for (name, value) in &setup.env {
            builder.env(name, value);
        }
        for d in &setup.dirs {
            let perms = if d.write { wasmtime_wasi::FsPerms::ReadWrite } else { wasmtime_wasi::FsPerms::ReadOnly };
            builder
                .preopened_dir(&d.host, &d.guest, perms)
                .map_err(|e| format!("cannot open granted directory {}: {e}", d.host))?;
        }
        wasi(&mut builder);
        Ok(Sandbox {
            wasi: builder.build(),
            table: {
                let mut table = ResourceTable::new();
                table.set_max_capacity(RESOURCE_HANDLES_CAP);
                table
            },
            limiter: MemoryLimiter::new(memory_cap),
            stdout,
            stderr,
            record: Record::default(),
            tripped: None,
            random_bytes: setup.random_bytes,
            usage_limits: setup.usage_limits,
            secrets: setup.secrets,
        })
    }

    /// The WASI context, for the store's `WasiView`.
    pub(crate) fn wasi(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }

    /// The resource table, for `wasi:http`'s view of the store.
    pub(crate) fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }

    /// Ends the attempt with `class`: records why, and returns the error to trap with.
    pub(crate) fn trip(&mut self, class: FailureClass, message: String) -> wasmtime::Error {
        let err = wasmtime::Error::msg(message.clone());
        self.tripped = Some((class, message));
        err
    }

    /// Ends the attempt if reported usage has gone past what the run's budget allows.
    pub(crate) fn check_usage_limits(&mut self) -> wasmtime::Result<()> {
        let over = self.usage_limits.iter().find_map(|(metric, limit)| {
            let used = self.record.usage.get(metric).copied().unwrap_or(0.0);
            (used > *limit)
                .then(|| format!("reported {used} `{metric}`, more than the {limit} the run's budget had left"))
        });
        match over {
            Some(msg) => Err(self.trip(FailureClass::RunBudgetExceeded, msg)),
            None => Ok(()),
        }
    }
}

/// Keeps a log line (within the caps) and hands it to the layer above.
pub(crate) fn log_line<T: SandboxView>(state: &mut T, line: LogLine) {
    keep_line(state, line, false);
}

/// `log_line` for every kind of guest text; a `notice` (of a drop) is kept even past the
/// line cap.
fn keep_line<T: SandboxView>(state: &mut T, mut line: LogLine, notice: bool) {
    let sandbox = state.sandbox();
    if let Some(clean) = redact(&line.message, &sandbox.secrets) {
        line.message = clean;
    }
    if !notice && sandbox.record.full() {
        sandbox.record.logs_dropped += 1;
        return;
    }
    let output = line.stream != "log";
    state.kept_line(&line, output);
    let record = &mut state.sandbox().record;
    if notice {
        record.logs.push(line);
    } else {
        record.push_log(line);
    }
}

/// Stops the guest if the layer above says it must (see [`SandboxView::halted`]).
pub(crate) fn stop_if_halted<T: SandboxView>(state: &mut T) -> wasmtime::Result<()> {
    match state.halted() {
        Some(msg) => Err(state.sandbox().trip(FailureClass::HostFault, msg)),
        None => Ok(()),
    }
}

/// Moves captured stdout and stderr into the log (and to the layer above), with a notice
/// of what was dropped, then returns the statistics.
pub(crate) fn finish<T: SandboxView>(state: &mut T, fuel: u64, wall_us: u64, tool: Option<&str>) -> StepStats {
    for (stream, level) in [("stdout", LogLevel::Info), ("stderr", LogLevel::Warn)] {
        let sandbox = state.sandbox();
        let pipe = if stream == "stdout" { &sandbox.stdout } else { &sandbox.stderr };
        let (bytes, dropped) = pipe.take();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let line = |message: String| LogLine { level, stream: stream.into(), tool: tool.map(Into::into), message };
        for l in text.lines().filter(|l| !l.is_empty()) {
            keep_line(state, line(l.to_string()), false);
        }
        if dropped > 0 {
            let message = format!("[{dropped} more bytes of {stream} dropped: the cap is {STDIO_CAP} bytes]");
            keep_line(state, LogLine { level: LogLevel::Warn, ..line(message) }, true);
        }
    }
    let dropped = state.sandbox().record.logs_dropped;
    if dropped > 0 {
        let message = format!("[{dropped} more log lines dropped: the cap is {LOG_LINES_CAP} lines per attempt]");
        let notice = LogLine { level: LogLevel::Warn, stream: "host".into(), tool: tool.map(Into::into), message };
        keep_line(state, notice, true);
    }
    let sandbox = state.sandbox();
    let r = std::mem::take(&mut sandbox.record);
    StepStats {
        fuel,
        tool_fuel: r.tool_fuel,
        wall_us,
        peak_memory: sandbox.limiter.peak(),
        tool_calls: r.tool_calls,
        usage: r.usage,
        logs: r.logs,
        logs_dropped: r.logs_dropped,
    }
}

impl Record {
    /// Whether the line cap is reached.
    fn full(&self) -> bool {
        self.logs.len() >= LOG_LINES_CAP
    }

    /// Keeps a line unless the cap is reached; `false` if it was dropped.
    pub(crate) fn push_log(&mut self, mut line: LogLine) -> bool {
        if self.full() {
            self.logs_dropped += 1;
            return false;
        }
        if line.message.len() > LOG_LINE_CAP {
            let cut = line.message.floor_char_boundary(LOG_LINE_CAP);
            line.message.truncate(cut);
            line.message.push_str(" [truncated]");
        }
        self.logs.push(line);
        true
    }

    /// Adds a usage report; `Err` names what is wrong with it.
    pub(crate) fn add_usage(&mut self, metric: &str, amount: f64) -> Result<(), String> {
        let valid_name = !metric.is_empty()
            && metric.len() <= 64
            && metric.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !valid_name {
            return Err(format!("usage metric name {metric:?} is invalid: use 1-64 letters, digits, `_`, `.` or `-`"));
        }
        if self.usage_reports >= USAGE_REPORTS_CAP {
            return Err(format!("more than {USAGE_REPORTS_CAP} usage reports in one attempt; report totals instead"));
        }
        self.usage_reports += 1;
        if !(0.0..=MAX_USAGE_AMOUNT).contains(&amount) {
            return Err(format!(
                "usage amount {amount} for `{metric}` must be a number from 0 to {MAX_USAGE_AMOUNT:e}"
            ));
        }
        if !self.usage.contains_key(metric) && self.usage.len() >= USAGE_METRICS_CAP {
            return Err(format!("more than {USAGE_METRICS_CAP} distinct usage metrics"));
        }
        let total = self.usage.get(metric).copied().unwrap_or(0.0) + amount;
        if !total.is_finite() {
            return Err(format!("usage amount {amount} would make the total of `{metric}` too large to count"));
        }
        self.usage.insert(metric.to_string(), total);
        Ok(())
    }

    /// Charges usage the host measured itself (a model call's tokens and their price):
    /// not a report, so not counted against the reports cap.
    pub(crate) fn charge_usage(&mut self, metric: &str, amount: f64) -> Result<(), String> {
        let total = self.usage.get(metric).copied().unwrap_or(0.0) + amount;
        if !(amount.is_finite() && amount >= 0.0 && total.is_finite()) {
            return Err(format!("the model's `{metric}` of {amount} cannot be counted"));
        }
        self.usage.insert(metric.to_string(), total);
        Ok(())
    }

    /// Folds a finished tool call (live or served from the journal) into the step's record.
    /// `Err` if the tool's usage would make one of the step's totals too large to count.
    pub(crate) fn absorb_tool(
        &mut self,
        logs: &[LogLine],
        usage: &BTreeMap<String, f64>,
        report: ToolCallReport,
    ) -> Result<(), String> {
        self.tool_fuel = self.tool_fuel.saturating_add(report.fuel);
        for line in logs {
            self.push_log(line.clone());
        }
        self.tool_calls.push(report);
        for (metric, amount) in usage {
            // Each amount was validated inside the tool's store; the sum may still overflow.
            let total = self.usage.get(metric).copied().unwrap_or(0.0) + amount;
            if !total.is_finite() {
                return Err(format!("the tool's usage would make the total of `{metric}` too large to count"));
            }
            self.usage.insert(metric.clone(), total);
        }
        Ok(())
    }
}
