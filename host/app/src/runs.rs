//! Reading runs: ids given whole or by a unique prefix (as git takes commits), the run
//! index, a run's verified events, its folded state and its report.

use tether_types::state::RunState;
use tether_types::store::{RunIndexStatus, RunQuery, RunSummary};
use tether_types::{Event, RunId, RunReport};

use crate::{App, AppError};

/// Shorter prefixes than this would match nearly every run (`run_` alone, say).
const SHORTEST_PREFIX: usize = 6;

impl App {
    /// The run `given` names: itself if the journal has it, else the one run whose id
    /// starts with it.
    pub async fn resolve_run(&self, given: &str) -> Result<RunId, AppError> {
        // A whole id, the common case, is one indexed lookup.
        if given.starts_with(RunId::PREFIX) && self.store.run_record(given).await?.index_status.is_some() {
            if let Ok(id) = RunId::try_from(given.to_string()) {
                return Ok(id);
            }
        }
        let ids = self.store.run_ids().await?;
        let found = if ids.iter().any(|id| id == given) {
            given.to_string()
        } else {
            let matches: Vec<String> = if given.len() < SHORTEST_PREFIX {
                Vec::new()
            } else {
                ids.into_iter().filter(|id| id.starts_with(given)).collect()
            };
            match <[String; 1]>::try_from(matches) {
                Ok([one]) => one,
                Err(matches) if matches.is_empty() => return Err(AppError::UnknownRun { given: given.into() }),
                Err(matches) => return Err(AppError::AmbiguousRun { given: given.into(), matches }),
            }
        };
        RunId::try_from(found).map_err(|e| AppError::Corrupt(format!("the journal holds a malformed run id: {e}")))
    }

    /// Runs in the index, newest first, optionally of one status.
    pub async fn runs(&self, status: Option<RunIndexStatus>, limit: u32) -> Result<Vec<RunSummary>, AppError> {
        Ok(self.store.runs(status, limit).await?)
    }

    /// A page of the run index, newest first (see [`RunQuery`]).
    pub async fn runs_page(&self, query: &RunQuery) -> Result<Vec<RunSummary>, AppError> {
        Ok(self.store.runs_page(query).await?)
    }

    /// A run's events, its hash chain verified.
    pub async fn events(&self, run: &RunId) -> Result<Vec<Event>, AppError> {
        let rows = self.store.events(run.as_str()).await?;
        Ok(tether_types::chain::verify_and_decode(run.as_str(), &rows)?)
    }

    /// A page of a run's events, oldest first: at most `limit` of those before seq
    /// `before` (the newest when none). Only the page is read, and it is checked to
    /// continue the hash chain from the event before it.
    pub async fn events_page(&self, run: &RunId, before: Option<u64>, limit: u64) -> Result<EventsPage, AppError> {
        let last = self.store.last_event(run.as_str()).await?;
        let end = before.map_or(last.0, |b| b.saturating_sub(1).min(last.0));
        let start = end.saturating_sub(limit.max(1) - 1).max(1);
        if end == 0 {
            return Ok(EventsPage { events: Vec::new(), last, older: None });
        }
        let rows = self.store.events_between(run.as_str(), start.saturating_sub(1).max(1), end).await?;
        let (anchor, page) = match rows.split_first() {
            Some((first, rest)) if start > 1 => ((first.seq, first.hash.as_str()), rest),
            _ => ((0, tether_types::chain::GENESIS_HASH), &rows[..]),
        };
        let events = tether_types::chain::verify_and_decode_after(run.as_str(), anchor, page)?;
        Ok(EventsPage { events, last, older: (start > 1).then_some(start) })
    }

    /// A run's state, folded from its verified events.
    pub async fn state(&self, run: &RunId) -> Result<(RunState, Vec<Event>), AppError> {
        let events = self.events(run).await?;
        let state = RunState::fold(run.as_str(), &events)?;
        Ok((state, events))
    }

    /// Writes a consistent copy of the whole journal to a new file, safely while other
    /// hosts use it.
    pub async fn backup(&self, to: &std::path::Path) -> Result<(), AppError> {
        Ok(self.store.backup(to).await?)
    }

    /// A run's report, from its journal alone (every step, whichever host ran it).
    pub async fn report(&self, run: &RunId) -> Result<RunReport, AppError> {
        let events = self.events(run).await?;
        Ok(tether_types::timeline::report_from_events(run.clone(), &events))
    }
}

/// A page of a run's events.
pub struct EventsPage {
    /// The events, oldest first.
    pub events: Vec<Event>,
    /// The run's last event now: its seq (the number of events) and hash.
    pub last: (u64, String),
    /// The `before` that asks for the page before this one, if there is one.
    pub older: Option<u64>,
}
