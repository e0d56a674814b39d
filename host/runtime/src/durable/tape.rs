//! The tape of one step attempt: every guest interaction (log line, usage report, clock
//! or random read, tool call) in order.
//!
//! - Live, with nothing recorded: each interaction is performed and journaled.
//! - Live after a crash: the interactions the journal already holds for this attempt are
//!   served from it (tool calls are not repeated; clocks and random return what they
//!   returned), then execution continues live.
//! - Replay: everything is served from the journal and nothing is performed; any
//!   interaction that differs from the recorded one, or goes past it, is a divergence.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tether_types::event::{EventKind, HostRead};
use tether_types::exchange::ExchangeAt;
use tether_types::LogLine;

use crate::durable::journal::RunJournal;
use crate::sandbox::store::SandboxView;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Live,
    Replay,
}

/// The first point where execution differed from the journal.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Divergence {
    /// Sequence number of the recorded event that was expected (the step's end event
    /// when the guest made an interaction the journal does not have).
    pub seq: Option<u64>,
    /// The step.
    pub step: String,
    /// What the journal holds there.
    pub expected: Option<EventKind>,
    /// What the guest did instead.
    pub actual: EventKind,
}

impl std::fmt::Display for Divergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |k: &EventKind| serde_json::to_string(k).unwrap_or_default();
        match (&self.seq, &self.expected) {
            (Some(seq), Some(e)) => {
                write!(f, "at event {seq}, step `{}`: expected {}, got {}", self.step, show(e), show(&self.actual))
            }
            _ => write!(f, "in step `{}`: the journal ends here, but the guest did {}", self.step, show(&self.actual)),
        }
    }
}

pub(crate) type SharedTape = Arc<Mutex<Tape>>;

/// A store's data whose attempt may be journaled: how the host functions above the
/// sandbox reach its tape.
pub(crate) trait TapeView: SandboxView {
    /// The attempt's tape; `None` when it is not journaled.
    fn tape(&self) -> Option<&SharedTape>;
}

pub(crate) struct Tape {
    pub(crate) step: String,
    expected: VecDeque<(u64, EventKind)>,
    /// Recorded HTTP exchanges, by which request they answer: requests run concurrently
    /// with the guest, so their events are served by number, not by position.
    exchanges: BTreeMap<ExchangeAt, (u64, EventKind)>,
    /// Requests recorded as leaving without an idempotency key (`http_sending`).
    sending: BTreeMap<ExchangeAt, u64>,
    /// Approval requests and decisions of HTTP requests, by approval id: raised beside
    /// the guest too, so served by id.
    http_approvals: BTreeMap<String, Vec<EventKind>>,
    mode: Mode,
    journal: Option<Arc<RunJournal>>,
    pub(crate) divergence: Option<Divergence>,
    pub(crate) matched: u64,
    reads: ReadCount,
    /// Why the attempt went past its read budget; the attempt is stopped with it.
    pub(crate) over_budget: Option<String>,
    /// Whether the journal holds stdout or stderr lines for this attempt (journals
    /// written before they were recorded have none; replay then does not compare them).
    has_output_lines: bool,
    /// The attempt has ended: what a request still running beside it would journal now
    /// belongs to no attempt, and is dropped.
    closed: bool,
}

/// Clock and random reads of one attempt against the step's `host_reads` and
/// `random_bytes` budget. Served reads count too, so an attempt ends at the same read
/// live, on resume and in replay.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ReadCount {
    pub(crate) reads: u32,
    pub(crate) random_bytes: u64,
    max_reads: u32,
    max_random_bytes: u64,
}

impl ReadCount {
    const UNLIMITED: ReadCount =
        ReadCount { reads: 0, random_bytes: 0, max_reads: u32::MAX, max_random_bytes: u64::MAX };
}

impl Tape {
    pub(crate) fn new(
        step: &str,
        expected: Vec<(u64, EventKind)>,
        mode: Mode,
        journal: Option<Arc<RunJournal>>,
    ) -> SharedTape {
        let has_output_lines = expected.iter().any(|(_, k)| is_output_line(k));
        let mut exchanges = BTreeMap::new();
        let mut sending = BTreeMap::new();
        let mut http_approvals: BTreeMap<String, Vec<EventKind>> = BTreeMap::new();
        let expected = expected
            .into_iter()
            .filter_map(|(seq, kind)| match kind {
                EventKind::ApprovalRequested { ref id, .. } | EventKind::ApprovalDecided { ref id, .. }
                    if id.ends_with(tether_types::exchange::APPROVAL_SUFFIX) =>
                {
                    http_approvals.entry(id.clone()).or_default().push(kind);
                    None
                }
                EventKind::HttpExchanged { at, .. } => {
                    exchanges.insert(at, (seq, kind));
                    None
                }
                EventKind::HttpSending { at, .. } => {
                    sending.insert(at, seq);
                    None
                }
                other => Some((seq, other)),
            })
            .collect();
        Arc::new(Mutex::new(Tape {
            step: step.to_string(),
            expected,
            exchanges,
            sending,
            http_approvals,
            mode,
            journal,
            divergence: None,
            matched: 0,
            reads: ReadCount::UNLIMITED,
            over_budget: None,
            has_output_lines,
            closed: false,
        }))
    }

    /// Sets the attempt's read budget.
    pub(crate) fn limit_reads(&mut self, max_reads: u32, max_random_bytes: u64) {
        self.reads.max_reads = max_reads;
        self.reads.max_random_bytes = max_random_bytes;
    }

    /// Counts one read of `random_bytes` bytes; `false` (and [`Tape::over_budget`] set)
    /// if it goes past the budget, in which case it is not journaled.
    fn charge(&mut self, random_bytes: u64) -> bool {
        if self.over_budget.is_some() {
            return false;
        }
        let r = &mut self.reads;
        r.reads = r.reads.saturating_add(1);
        r.random_bytes = r.random_bytes.saturating_add(random_bytes);
        if r.reads > r.max_reads {
            self.over_budget = Some(format!(
                "read the clock or random numbers more than {} times; its host_reads budget is {}",
                r.max_reads, r.max_reads
            ));
        } else if r.random_bytes > r.max_random_bytes {
            self.over_budget = Some(format!(
                "asked for {} bytes of random in total; its random_bytes budget is {}",
                r.random_bytes, r.max_random_bytes
            ));
        }
        self.over_budget.is_none()
    }

    fn emit(&mut self, kind: EventKind) {
        if self.closed {
            return;
        }
        if let Some(j) = &self.journal {
            j.record(kind);
        }
    }

    fn diverge(&mut self, recorded: Option<(u64, EventKind)>, actual: EventKind) {
        if self.divergence.is_none() {
            let (seq, expected) = recorded.map_or((None, None), |(s, e)| (Some(s), Some(e)));
            self.divergence = Some(Divergence { seq, step: self.step.clone(), expected, actual });
        }
    }

    /// The attempt has ended; nothing more is journaled for it.
    pub(crate) fn close(&mut self) {
        self.closed = true;
    }

    /// The recorded interactions not yet reached, in order. HTTP exchanges are not among
    /// them: a request the guest made without awaiting its answer may not have been served
    /// before the attempt ended, and that is not a divergence.
    pub(crate) fn leftover(&self) -> Option<&(u64, EventKind)> {
        self.expected.front()
    }

    /// What the journal holds for HTTP request `at`. A request the journal lacks while
    /// replaying is a divergence (`Err`); `actual` describes it.
    pub(crate) fn recorded_exchange(
        &mut self,
        at: ExchangeAt,
        actual: impl FnOnce() -> EventKind,
    ) -> Result<RecordedExchange, ()> {
        if self.divergence.is_some() {
            return Err(());
        }
        let sending = self.sending.remove(&at);
        if let Some(recorded) = self.exchanges.remove(&at) {
            self.matched += 1 + u64::from(sending.is_some());
            return Ok(RecordedExchange::Answered(Box::new(recorded)));
        }
        match (sending, self.mode) {
            (Some(seq), _) => {
                self.matched += 1;
                Ok(RecordedExchange::InFlight(seq))
            }
            (None, Mode::Live) => Ok(RecordedExchange::None),
            (None, Mode::Replay) => {
                self.diverge(None, actual());
                Err(())
            }
        }
    }

    /// What the journal holds of approval `id` of an HTTP request: its request and
    /// decisions, in order (taken: each is served once).
    pub(crate) fn http_approval(&mut self, id: &str) -> Vec<EventKind> {
        let recorded = self.http_approvals.remove(id).unwrap_or_default();
        self.matched += recorded.len() as u64;
        recorded
    }

    /// The guest made request `actual` where the journal holds `recorded`.
    pub(crate) fn exchange_differs(&mut self, recorded: (u64, EventKind), actual: EventKind) {
        self.diverge(Some(recorded), actual);
    }

    /// An interaction without a value to serve (a log line, a usage report).
    pub(crate) fn note(&mut self, actual: EventKind) {
        if self.divergence.is_some() {
            return;
        }
        match self.expected.pop_front() {
            Some((_, recorded)) if recorded == actual => self.matched += 1,
            Some(recorded) => self.diverge(Some(recorded), actual),
            None if self.mode == Mode::Live => self.emit(actual),
            None => self.diverge(None, actual),
        }
    }

    /// A line of the guest's stdout or stderr (or a notice of what was dropped), noted
    /// when the attempt ends. Replaying a journal that holds none for this attempt does
    /// not compare them: it was written before they were recorded.
    pub(crate) fn note_output_line(&mut self, actual: EventKind) {
        if self.mode == Mode::Replay && !self.has_output_lines {
            return;
        }
        self.note(actual);
    }

    /// A line the guest's record kept: a log line, or (`output`) a line of its stdout or
    /// stderr or a notice of what was dropped.
    pub(crate) fn note_line(&mut self, line: &LogLine, output: bool) {
        let event = EventKind::GuestLog {
            step: self.step.clone(),
            level: line.level,
            stream: line.stream.clone(),
            tool: line.tool.clone(),
            message: line.message.clone(),
        };
        if output {
            self.note_output_line(event);
        } else {
            self.note(event);
        }
    }

    /// A usage report.
    pub(crate) fn note_usage(&mut self, metric: &str, amount: f64) {
        let step = self.step.clone();
        self.note(EventKind::UsageReported { step, metric: metric.to_string(), amount });
    }

    /// Why the guest must stop: execution has left the journal.
    pub(crate) fn halted(&self) -> Option<String> {
        self.divergence.as_ref().map(|d| format!("execution diverged from the journal {d}"))
    }

    /// A clock read: the recorded value if there is one of the same source, otherwise
    /// `live()`, journaled. Past the read budget the value is live and not journaled;
    /// the attempt is stopped at its next check (see [`Tape::over_budget`]).
    pub(crate) fn read(
        &mut self,
        same_source: impl Fn(&HostRead) -> bool,
        live: impl FnOnce() -> HostRead,
    ) -> HostRead {
        if !self.charge(0) {
            return live();
        }
        self.read_charged(same_source, live)
    }

    /// `len` bytes of secure random, one journal event for the whole call. `Err` says
    /// why they cannot be given: the read budget, or a recorded value that is not what
    /// was recorded for such a read.
    pub(crate) fn random(&mut self, len: u64) -> Result<Vec<u8>, String> {
        if !self.charge(len) {
            return Err(self.over_budget.clone().unwrap_or_default());
        }
        let n = len as usize;
        if let Some(bytes) = self.served_per_byte(n) {
            return Ok(bytes);
        }
        let read = self.read_charged(
            |r| matches!(r, HostRead::Random { hex } if hex.len() == 2 * n),
            || {
                let mut bytes = vec![0u8; n];
                rand::fill(&mut bytes[..]);
                HostRead::Random { hex: hex::encode(bytes) }
            },
        );
        match read {
            HostRead::Random { hex } => match hex::decode(&hex) {
                Ok(bytes) if bytes.len() == n => Ok(bytes),
                _ => Err(format!("the journal's random value for this read is not {n} bytes of hex")),
            },
            other => Err(format!("the journal holds {other:?} where random bytes were read")),
        }
    }

    /// Journals written before random reads were one event per call hold one 4-byte
    /// event per byte (the low byte is the one given). Served as recorded when the next
    /// `n` events have that shape (a read of 4 bytes is always taken as one event).
    fn served_per_byte(&mut self, n: usize) -> Option<Vec<u8>> {
        let per_byte = |k: &(u64, EventKind)| {
            matches!(&k.1, EventKind::HostRead { read: HostRead::Random { hex }, .. }
                if hex.len() == 8 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        };
        if n == 4 || n == 0 || self.divergence.is_some() || self.expected.len() < n {
            return None;
        }
        if !self.expected.iter().take(n).all(per_byte) {
            return None;
        }
        let mut bytes = Vec::with_capacity(n);
        for (_, kind) in self.expected.drain(..n) {
            if let EventKind::HostRead { read: HostRead::Random { hex }, .. } = kind {
                bytes.push(hex::decode(&hex).ok()?.first().copied()?);
            }
        }
        self.matched += n as u64;
        Some(bytes)
    }

    fn read_charged(&mut self, same_source: impl Fn(&HostRead) -> bool, live: impl FnOnce() -> HostRead) -> HostRead {
        if self.divergence.is_some() {
            return live();
        }
        match self.expected.pop_front() {
            Some((_, EventKind::HostRead { read, .. })) if same_source(&read) => {
                self.matched += 1;
                read
            }
            Some(recorded) => {
                let value = live();
                let actual = EventKind::HostRead { step: self.step.clone(), read: value.clone() };
                self.diverge(Some(recorded), actual);
                value
            }
            None => {
                let value = live();
                let actual = EventKind::HostRead { step: self.step.clone(), read: value.clone() };
                if self.mode == Mode::Live {
                    self.emit(actual);
                } else {
                    self.diverge(None, actual);
                }
                value
            }
        }
    }

    /// A recorded interaction that `wanted` accepts, served from the journal. `Ok(None)`:
    /// the journal has nothing more for this attempt and execution is live, so the caller
    /// decides now (and [`Tape::emit_live`]s it). A different recorded interaction, or
    /// nothing recorded while replaying, is a divergence (`Err`); `actual` describes what
    /// the guest did instead.
    pub(crate) fn serve(
        &mut self,
        wanted: impl Fn(&EventKind) -> bool,
        actual: impl FnOnce() -> EventKind,
    ) -> Result<Option<EventKind>, ()> {
        if self.divergence.is_some() {
            return Err(());
        }
        match self.expected.front() {
            Some((_, recorded)) if wanted(recorded) => {
                self.matched += 1;
                Ok(self.expected.pop_front().map(|(_, k)| k))
            }
            Some(_) => {
                let recorded = self.expected.pop_front();
                self.diverge(recorded, actual());
                Err(())
            }
            None if self.mode == Mode::Live => Ok(None),
            None => {
                self.diverge(None, actual());
                Err(())
            }
        }
    }

    /// Journals a decision made live (after [`Tape::serve`] gave `None`).
    pub(crate) fn emit_live(&mut self, kind: &EventKind) {
        self.emit(kind.clone());
    }

    /// The journal to flush after an executed tool call, if live.
    pub(crate) fn journal(&self) -> Option<Arc<RunJournal>> {
        self.journal.clone()
    }
}

/// What the journal holds for one HTTP request.
pub(crate) enum RecordedExchange {
    /// Its exchange: the request as recorded, and what it got.
    Answered(Box<(u64, EventKind)>),
    /// Only that it was leaving without an idempotency key (at this seq): it may or may
    /// not have taken effect.
    InFlight(u64),
    /// Nothing: it is made now.
    None,
}

/// A journaled line of stdout or stderr, or the host's notice of dropped lines.
fn is_output_line(kind: &EventKind) -> bool {
    matches!(kind, EventKind::GuestLog { stream, .. } if matches!(stream.as_str(), "stdout" | "stderr" | "host"))
}

pub(crate) fn lock(tape: &SharedTape) -> std::sync::MutexGuard<'_, Tape> {
    tape.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random_event(hex: &str) -> (u64, EventKind) {
        (1, EventKind::HostRead { step: "s".into(), read: HostRead::Random { hex: hex.into() } })
    }

    #[test]
    fn journals_with_one_event_per_random_byte_are_served_as_recorded() {
        let recorded = vec![
            random_event("0a000000"),
            random_event("0bffffff"),
            random_event("0c000000"),
            random_event("1122334455667788"),
        ];
        let tape = Tape::new("s", recorded, Mode::Replay, None);
        let mut t = lock(&tape);
        assert_eq!(t.random(3).unwrap(), [0x0a, 0x0b, 0x0c]);
        assert_eq!(t.random(8).unwrap(), hex::decode("1122334455667788").unwrap());
        assert!(t.divergence.is_none() && t.leftover().is_none());
        assert_eq!(t.matched, 4);
    }

    #[test]
    fn a_recorded_random_value_that_cannot_be_read_is_an_error_not_zeros() {
        let tape = Tape::new("s", vec![random_event("zz")], Mode::Replay, None);
        let err = lock(&tape).random(1).unwrap_err();
        assert!(err.contains("not 1 bytes of hex"), "{err}");
    }

    #[test]
    fn reads_past_the_budget_are_refused_and_say_which_budget() {
        let tape = Tape::new("s", Vec::new(), Mode::Live, None);
        let mut t = lock(&tape);
        t.limit_reads(3, 16);
        assert_eq!(t.random(10).unwrap().len(), 10);
        let err = t.random(10).unwrap_err();
        assert!(err.contains("20 bytes of random in total; its random_bytes budget is 16"), "{err}");
        // Once over, every later read is refused too.
        assert!(t.random(1).is_err());
        let tape = Tape::new("s", Vec::new(), Mode::Live, None);
        let mut t = lock(&tape);
        t.limit_reads(2, 16);
        for _ in 0..3 {
            t.read(|_| true, || HostRead::WallClock { nanos: 1 });
        }
        assert!(t.over_budget.as_deref().unwrap().contains("host_reads budget is 2"));
    }
}

#[cfg(test)]
mod exchanges {
    use super::*;
    use tether_types::exchange::{HttpError, HttpOutcome, RecordedBody, RecordedRequest};

    fn exchanged(n: u32) -> EventKind {
        EventKind::HttpExchanged {
            step: "s".into(),
            at: ExchangeAt { tool_call: None, exchange: n },
            request: RecordedRequest {
                method: "GET".into(),
                url: format!("http://x/{n}"),
                headers: vec![],
                body: RecordedBody::of(b"", 0),
                credential: None,
            },
            outcome: HttpOutcome::Failed { error: HttpError::Denied, message: String::new() },
            wall_us: 0,
        }
    }

    fn log(message: &str) -> EventKind {
        EventKind::UsageReported { step: "s".into(), metric: message.into(), amount: 1.0 }
    }

    #[test]
    fn exchanges_are_served_by_number_whatever_their_place_in_the_journal() {
        // Request 1's answer was journaled before request 0's, and between two other
        // interactions: each is still found by its number, and the others keep their order.
        let recorded = vec![(3, log("a")), (4, exchanged(1)), (5, exchanged(0)), (6, log("b"))];
        let tape = Tape::new("s", recorded, Mode::Replay, None);
        let mut t = lock(&tape);
        t.note_usage("a", 1.0);
        let at = |n| ExchangeAt { tool_call: None, exchange: n };
        assert!(matches!(t.recorded_exchange(at(0), || exchanged(0)), Ok(RecordedExchange::Answered(e)) if e.0 == 5));
        assert_eq!(t.leftover().map(|(seq, _)| *seq), Some(6));
        t.note_usage("b", 1.0);
        assert!(t.leftover().is_none(), "an exchange not served is no leftover");
        assert!(matches!(t.recorded_exchange(at(1), || exchanged(1)), Ok(RecordedExchange::Answered(_))));
        assert!(t.leftover().is_none() && t.divergence.is_none());
        // Replay: a request the journal lacks is a divergence.
        assert!(t.recorded_exchange(at(2), || exchanged(2)).is_err());
        assert_eq!(t.divergence.as_ref().map(|d| d.seq), Some(None));
    }

    #[test]
    fn a_request_marked_as_leaving_without_its_answer_is_in_flight() {
        let at = ExchangeAt { tool_call: Some(1), exchange: 0 };
        let sending = EventKind::HttpSending { step: "s".into(), at, method: "POST".into(), url: "http://x".into() };
        let tape = Tape::new("s", vec![(7, sending)], Mode::Live, None);
        let mut t = lock(&tape);
        assert!(t.leftover().is_none(), "a marker is no leftover");
        assert!(matches!(t.recorded_exchange(at, || exchanged(0)), Ok(RecordedExchange::InFlight(7))));
        // Live, with nothing recorded: made now.
        let next = ExchangeAt { tool_call: Some(1), exchange: 1 };
        assert!(matches!(t.recorded_exchange(next, || exchanged(1)), Ok(RecordedExchange::None)));
    }
}

#[cfg(test)]
mod output_lines {
    use super::*;
    use tether_types::LogLevel;

    fn line(stream: &str, message: &str) -> EventKind {
        EventKind::GuestLog {
            step: "s".into(),
            level: LogLevel::Info,
            stream: stream.into(),
            tool: None,
            message: message.into(),
        }
    }

    #[test]
    fn replaying_a_journal_without_output_lines_does_not_compare_them() {
        let tape = Tape::new("s", Vec::new(), Mode::Replay, None);
        lock(&tape).note_output_line(line("stdout", "hello"));
        assert!(lock(&tape).divergence.is_none());
        // A log line the journal lacks is still a divergence.
        lock(&tape).note(line("log", "hello"));
        assert!(lock(&tape).divergence.is_some());
    }

    #[test]
    fn recorded_output_lines_must_match() {
        let tape = Tape::new("s", vec![(3, line("stdout", "hello"))], Mode::Replay, None);
        lock(&tape).note_output_line(line("stdout", "goodbye"));
        assert_eq!(lock(&tape).divergence.as_ref().and_then(|d| d.seq), Some(3));
    }
}
