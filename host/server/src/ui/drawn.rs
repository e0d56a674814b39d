//! The costly part of a run's page (its view, graph and timeline, folded from the whole
//! verified journal), kept for the few runs looked at most recently and used again for as
//! long as the run's last event is the same. A finished run of 100,000 events is read
//! whole once; every later view reads only its last event and the page of events shown.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde_json::Value;

/// Runs whose drawings are kept.
const KEPT: usize = 16;

/// A run's page, drawn from its journal as it stood at `last`.
pub(crate) struct Drawn {
    /// The run.
    pub run: String,
    /// The journal's last event then: its seq and hash.
    pub last: (u64, String),
    /// The run's view (what `tether show --json` prints).
    pub view: Value,
    /// The workflow's graph and the timeline, rendered.
    pub graph: String,
    pub timeline: String,
}

/// The drawings kept, most recent last.
#[derive(Default)]
pub struct RunPages {
    kept: Mutex<VecDeque<Arc<Drawn>>>,
}

impl RunPages {
    /// The drawing of `run` at `last`, if it is kept.
    pub(crate) fn get(&self, run: &str, last: &(u64, String)) -> Option<Arc<Drawn>> {
        let kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        kept.iter().find(|d| d.run == run && d.last == *last).cloned()
    }

    /// Keeps `drawn` in place of any older drawing of its run.
    pub(crate) fn keep(&self, drawn: Arc<Drawn>) {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        kept.retain(|d| d.run != drawn.run);
        if kept.len() >= KEPT {
            kept.pop_front();
        }
        kept.push_back(drawn);
    }
}
