//! Cancelling a run: a person's decision to stop it, journaled under the run's lease with
//! who and why; then the run is continued, which undoes its completed steps and ends it
//! `cancelled`. A cancel recorded by a process killed before the run ended is finished by
//! the next cancel or resume.
//!
//! A run another live host executes cannot be written here: the cancel is left as a
//! request that the executing host picks up within a fraction of a second (it interrupts
//! its attempts, journals the cancel and undoes), and this waits for the end.

use std::time::{Duration, Instant};

use tether_runtime::Progress;
use tether_types::state::RunState;
use tether_types::{EventKind, RunId, RunReport};

use crate::{App, AppError, Continued};

/// A cancel someone asks for.
#[derive(Clone, Debug)]
pub struct CancelRequest {
    /// The run, whole or by a unique prefix.
    pub run: String,
    /// Who cancels.
    pub identity: String,
    /// Why.
    pub reason: Option<String>,
    /// How long to wait for a run another host executes to end.
    pub wait: Duration,
}

/// What happened on the way, for the caller to show as it happens.
pub enum CancelNote<'a> {
    /// The cancel is journaled (`earlier`: by whom, if it had been before and is being
    /// finished now); the run is being undone.
    Recorded {
        /// The run.
        run: &'a RunId,
        /// Who cancelled it before, when this finishes an earlier cancel.
        earlier: Option<&'a str>,
    },
    /// Another host executes the run; it was asked to cancel, and this waits.
    AskedHolder {
        /// The run.
        run: &'a RunId,
        /// How long this waits.
        wait: Duration,
    },
}

/// How a cancel ended.
pub enum Cancelled {
    /// The run ended (cancelled here or by the host executing it): its report.
    Ended(RunReport),
    /// The cancel was recorded here, but another host took the run before it was undone.
    HeldElsewhere(String),
    /// The host executing the run has not ended it within the wait; the request stands.
    StillRunning(RunId),
}

impl App {
    /// Cancels a run. The lease is taken at once or not at all (build the [`App`] with
    /// no lease wait): a run another live host executes gets a request instead.
    pub async fn cancel(
        &self,
        request: &CancelRequest,
        mut note: impl FnMut(CancelNote<'_>),
        progress: impl FnMut(Progress<'_>),
    ) -> Result<Cancelled, AppError> {
        let run = self.resolve_run(&request.run).await?;
        match self.record_cancel(&run, request).await {
            Ok(earlier) => {
                note(CancelNote::Recorded { run: &run, earlier: earlier.as_deref() });
                return self.undo(&run, progress).await;
            }
            Err(AppError::Busy(_)) => {}
            Err(e) => return Err(e),
        }
        self.store.request_cancel(run.as_str(), &request.identity, request.reason.as_deref()).await?;
        note(CancelNote::AskedHolder { run: &run, wait: request.wait });
        let until = Instant::now() + request.wait;
        loop {
            let (state, _) = self.state(&run).await?;
            if state.outcome.is_some() {
                return Ok(Cancelled::Ended(self.report(&run).await?));
            }
            // The holder may have stopped (to wait for people, or paused) without ending
            // the run: then the lease is free and the cancel is recorded here after all.
            if state.waiting || state.paused.is_some() {
                match self.record_cancel(&run, request).await {
                    Err(AppError::Busy(_)) => {}
                    Err(e) => return Err(e),
                    Ok(earlier) => {
                        note(CancelNote::Recorded { run: &run, earlier: earlier.as_deref() });
                        return self.undo(&run, progress).await;
                    }
                }
            }
            if Instant::now() >= until {
                return Ok(Cancelled::StillRunning(run));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Journals the cancel under the run's lease, without undoing anything yet (a
    /// continue of the run does). A run cancelled before and not yet ended is left as it
    /// is, to be finished: `Ok(Some(who cancelled it))`.
    pub async fn record_cancel(&self, run: &RunId, request: &CancelRequest) -> Result<Option<String>, AppError> {
        let mut earlier = None;
        tether_runtime::append_with(&self.store, self.leases, run.as_str(), |events| {
            let state = RunState::fold(run.as_str(), events)?;
            if state.outcome.is_some() {
                let status = tether_types::state::index_status(events).as_str().to_string();
                return Err(AppError::RunEnded { run: run.to_string(), status });
            }
            if let Some((by, _)) = &state.cancelled {
                earlier = Some(by.clone());
                return Ok(Vec::new());
            }
            Ok(vec![EventKind::RunCancelled { by: request.identity.clone(), reason: request.reason.clone() }])
        })
        .await?;
        Ok(earlier)
    }

    async fn undo(&self, run: &RunId, progress: impl FnMut(Progress<'_>)) -> Result<Cancelled, AppError> {
        Ok(match self.continue_run(run, progress).await? {
            Continued::Report(report) => Cancelled::Ended(report),
            Continued::HeldElsewhere(why) => Cancelled::HeldElsewhere(why),
        })
    }
}
