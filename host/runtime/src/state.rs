//! What one store holds: a WASI context with nothing granted, the memory limiter, the
//! captured stdio, and the record of what the guest did (logs, usage, tool calls).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use tether_types::event::EventKind;
use tether_types::plan::DirGrant;
use tether_types::{FailureClass, LogLevel, LogLine, StepStats, ToolCallReport};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::durable::tape::{lock, SharedTape};
use crate::load::LoadedTool;
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
/// Most random bytes a tool may ask for in one call (wasmtime-wasi's default is 64 MiB).
const TOOL_RANDOM_CAP: u64 = 1 << 20;

pub(crate) struct StoreState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) stdout: CappedPipe,
    pub(crate) stderr: CappedPipe,
    pub(crate) record: Record,
    /// Set by a host function that ends the attempt for a budget reason, so the trap it
    /// raises is classified by cause rather than by message.
    pub(crate) tripped: Option<(FailureClass, String)>,
    /// Present in step stores only: what the step may call.
    pub(crate) step: Option<StepGrants>,
    /// Present in journaled step attempts: where interactions are served from and go to.
    pub(crate) tape: Option<SharedTape>,
    /// Present in tool calls: the call's idempotency key.
    pub(crate) idempotency_key: Option<String>,
    /// Values of granted secrets, redacted from every log line.
    pub(crate) secrets: Arc<Vec<String>>,
}

/// How to set up one sandbox.
#[derive(Default)]
pub(crate) struct Setup {
    pub(crate) step: Option<StepGrants>,
    pub(crate) tape: Option<SharedTape>,
    /// Seeds deterministic insecure random (journaled attempts).
    pub(crate) seed: Option<String>,
    pub(crate) dirs: Vec<DirGrant>,
    /// Granted environment variables.
    pub(crate) env: Vec<(String, String)>,
    pub(crate) secrets: Arc<Vec<String>>,
    pub(crate) idempotency_key: Option<String>,
}

/// A step's view of the tools it was granted and how many calls remain.
pub(crate) struct StepGrants {
    pub(crate) step_name: String,
    /// For idempotency keys.
    pub(crate) run_id: String,
    pub(crate) tools: Arc<HashMap<String, Arc<LoadedTool>>>,
    pub(crate) max_calls: u32,
    pub(crate) deadline: Instant,
    pub(crate) max_tool_input: u64,
    /// Secure random bytes the step may ask for.
    pub(crate) random_bytes: u64,
    /// Usage the step may still report, per metric, before the run's budget runs out.
    pub(crate) usage_limits: BTreeMap<String, f64>,
    /// Tools the step declared that its identity may not use, with the reason.
    pub(crate) refused_tools: Arc<BTreeMap<String, String>>,
    /// The run's policy and identity, when it has a policy.
    pub(crate) governance: Option<Arc<crate::govern::Governance>>,
    /// Granted environment values, for the tools the step calls.
    pub(crate) env: Arc<crate::govern::EnvValues>,
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
}

impl StoreState {
    /// `Err` if a granted directory cannot be opened.
    pub(crate) fn new(memory_cap: u64, setup: Setup) -> Result<Self, String> {
        let stdout = CappedPipe::new(STDIO_CAP);
        let stderr = CappedPipe::new(STDIO_CAP);
        // Nothing is granted unless the setup says so: no env, args, network or inherited
        // stdio; directories only as granted. Only the capped in-memory stdout/stderr.
        let mut builder = WasiCtxBuilder::new();
        builder.stdout(stdout.clone()).stderr(stderr.clone());
        // Bounds one call of the random functions wasmtime-wasi serves itself (insecure
        // random for steps, all random for tools) before it allocates.
        builder.max_random_size(setup.step.as_ref().map_or(TOOL_RANDOM_CAP, |g| g.random_bytes));
        for (name, value) in &setup.env {
            builder.env(name, value);
        }
        for d in &setup.dirs {
            let perms = if d.write { wasmtime_wasi::FsPerms::ReadWrite } else { wasmtime_wasi::FsPerms::ReadOnly };
            builder
                .preopened_dir(&d.host, &d.guest, perms)
                .map_err(|e| format!("cannot open granted directory {}: {e}", d.host))?;
        }
        if let (Some(tape), Some(seed)) = (&setup.tape, &setup.seed) {
            crate::durable::clocks::virtualize(&mut builder, tape, seed);
        }
        Ok(StoreState {
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
            step: setup.step,
            tape: setup.tape,
            idempotency_key: setup.idempotency_key,
            secrets: setup.secrets,
        })
    }

    /// Keeps a log line (within the caps) and puts it on the tape.
    pub(crate) fn log_line(&mut self, line: LogLine) {
        self.keep_line(line, false);
    }

    /// `log_line` for every kind of guest text. `output`: a stdout/stderr line or a
    /// notice of a drop, put on the tape when the attempt ends; a notice is kept even past
    /// the line cap.
    fn keep_line(&mut self, mut line: LogLine, notice: bool) {
        if let Some(clean) = crate::redact::redact(&line.message, &self.secrets) {
            line.message = clean;
        }
        let event = self.tape.as_ref().map(|t| EventKind::GuestLog {
            step: lock(t).step.clone(),
            level: line.level,
            stream: line.stream.clone(),
            tool: line.tool.clone(),
            message: line.message.clone(),
        });
        let output = line.stream != "log";
        let kept = if notice {
            self.record.logs.push(line);
            true
        } else {
            self.record.push_log(line)
        };
        if let (true, Some(t), Some(e)) = (kept, &self.tape, event) {
            if output {
                lock(t).note_output_line(e);
            } else {
                lock(t).note(e);
            }
        }
    }

    /// Ends the attempt if reported usage has gone past what the run's budget allows.
    pub(crate) fn check_usage_limits(&mut self) -> wasmtime::Result<()> {
        let over = self.step.as_ref().and_then(|g| {
            g.usage_limits.iter().find_map(|(metric, limit)| {
                let used = self.record.usage.get(metric).copied().unwrap_or(0.0);
                (used > *limit)
                    .then(|| format!("reported {used} `{metric}`, more than the {limit} the run's budget had left"))
            })
        });
        match over {
            Some(msg) => Err(self.trip(FailureClass::RunBudgetExceeded, msg)),
            None => Ok(()),
        }
    }

    /// Why the attempt went past its `host_reads` or `random_bytes` budget, if it did.
    pub(crate) fn over_read_budget(&self) -> Option<String> {
        self.tape.as_ref().and_then(|t| lock(t).over_budget.clone())
    }

    /// The divergence of this attempt's tape, if execution has left the journal.
    pub(crate) fn divergence(&self) -> Option<crate::durable::tape::Divergence> {
        self.tape.as_ref().and_then(|t| lock(t).divergence.clone())
    }

    /// Ends the attempt with `class`: records why, and returns the error to trap with.
    pub(crate) fn trip(&mut self, class: FailureClass, message: String) -> wasmtime::Error {
        let err = wasmtime::Error::msg(message.clone());
        self.tripped = Some((class, message));
        err
    }

    /// Moves captured stdout and stderr into the log and the journal, with a notice of
    /// what was dropped, then returns the statistics.
    pub(crate) fn finish(&mut self, fuel: u64, wall_us: u64, tool: Option<&str>) -> StepStats {
        for (stream, level) in [("stdout", LogLevel::Info), ("stderr", LogLevel::Warn)] {
            let pipe = if stream == "stdout" { &self.stdout } else { &self.stderr };
            let (bytes, dropped) = pipe.take();
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let line = |message: String| LogLine { level, stream: stream.into(), tool: tool.map(Into::into), message };
            for l in text.lines().filter(|l| !l.is_empty()) {
                self.keep_line(line(l.to_string()), false);
            }
            if dropped > 0 {
                let message = format!("[{dropped} more bytes of {stream} dropped: the cap is {STDIO_CAP} bytes]");
                self.keep_line(LogLine { level: LogLevel::Warn, ..line(message) }, true);
            }
        }
        if self.record.logs_dropped > 0 {
            let message = format!(
                "[{} more log lines dropped: the cap is {LOG_LINES_CAP} lines per attempt]",
                self.record.logs_dropped
            );
            let notice = LogLine { level: LogLevel::Warn, stream: "host".into(), tool: tool.map(Into::into), message };
            self.keep_line(notice, true);
        }
        let r = std::mem::take(&mut self.record);
        StepStats {
            fuel,
            tool_fuel: r.tool_fuel,
            wall_us,
            peak_memory: self.limiter.peak(),
            tool_calls: r.tool_calls,
            usage: r.usage,
            logs: r.logs,
            logs_dropped: r.logs_dropped,
        }
    }
}

impl Record {
    /// Keeps a line unless the cap is reached; `false` if it was dropped.
    pub(crate) fn push_log(&mut self, mut line: LogLine) -> bool {
        if self.logs.len() >= LOG_LINES_CAP {
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

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}
