//! The tape of one step attempt: every guest interaction (log line, usage report, clock
//! or random read, tool call) in order.
//!
//! - Live, with nothing recorded: each interaction is performed and journaled.
//! - Live after a crash: the interactions the journal already holds for this attempt are
//!   served from it (tool calls are not repeated; clocks and random return what they
//!   returned), then execution continues live.
//! - Replay: everything is served from the journal and nothing is performed; any
//!   interaction that differs from the recorded one, or goes past it, is a divergence.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tether_types::event::{EventKind, HostRead};

use crate::journal::RunJournal;

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

pub(crate) struct Tape {
    pub(crate) step: String,
    expected: VecDeque<(u64, EventKind)>,
    mode: Mode,
    journal: Option<Arc<RunJournal>>,
    pub(crate) divergence: Option<Divergence>,
    pub(crate) matched: u64,
}

impl Tape {
    pub(crate) fn new(
        step: &str,
        expected: Vec<(u64, EventKind)>,
        mode: Mode,
        journal: Option<Arc<RunJournal>>,
    ) -> SharedTape {
        Arc::new(Mutex::new(Tape {
            step: step.to_string(),
            expected: expected.into(),
            mode,
            journal,
            divergence: None,
            matched: 0,
        }))
    }

    fn emit(&mut self, kind: &EventKind) {
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

    /// The recorded interactions not yet reached.
    pub(crate) fn leftover(&self) -> Option<&(u64, EventKind)> {
        self.expected.front()
    }

    /// An interaction without a value to serve (a log line, a usage report).
    pub(crate) fn note(&mut self, actual: EventKind) {
        if self.divergence.is_some() {
            return;
        }
        match self.expected.pop_front() {
            Some((_, recorded)) if recorded == actual => self.matched += 1,
            Some(recorded) => self.diverge(Some(recorded), actual),
            None if self.mode == Mode::Live => self.emit(&actual),
            None => self.diverge(None, actual),
        }
    }

    /// A clock or random read: the recorded value if there is one of the same source
    /// (and size), otherwise `live()`, journaled.
    pub(crate) fn read(
        &mut self,
        same_source: impl Fn(&HostRead) -> bool,
        live: impl FnOnce() -> HostRead,
    ) -> HostRead {
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
                    self.emit(&actual);
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
        self.emit(kind);
    }

    /// The journal to flush after an executed tool call, if live.
    pub(crate) fn journal(&self) -> Option<Arc<RunJournal>> {
        self.journal.clone()
    }
}

pub(crate) fn lock(tape: &SharedTape) -> std::sync::MutexGuard<'_, Tape> {
    tape.lock().unwrap_or_else(|p| p.into_inner())
}
