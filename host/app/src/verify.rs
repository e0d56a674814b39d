//! Verifying: what can be wrong with a recorded run, each named. A run's journal
//! must hold an intact hash chain, reach the head anchored when the run was last given
//! up (exactly: a cut tail shows), and agree with
//! its row in the run index (an edited status or a missing row shows).

use serde::Serialize;
use tether_types::chain::verify_and_decode;
use tether_types::store::{JournalStore, StoreError};

use crate::{App, AppError};

/// What `verify` found about one run.
#[derive(Serialize)]
pub struct Checked {
    /// The run.
    pub run_id: String,
    /// Events in its journal.
    pub events: u64,
    /// The last event's hash, when the chain is intact.
    pub head: Option<String>,
    /// Everything wrong, in words; empty if nothing is.
    pub problems: Vec<String>,
}

async fn check(store: &dyn JournalStore, run: &str) -> Result<Checked, StoreError> {
    let rows = match store.events(run).await {
        Ok(rows) => rows,
        Err(StoreError::UnknownRun(_)) => Vec::new(),
        Err(e) => return Err(e),
    };
    let record = store.run_record(run).await?;
    let mut checked = Checked { run_id: run.to_string(), events: rows.len() as u64, head: None, problems: Vec::new() };
    let last = rows.last().map(|r| (r.seq, r.hash.clone()));
    match (&last, &record.head) {
        (Some((seq, hash)), Some(head)) => {
            if *seq < head.seq {
                checked.problems.push(format!(
                    "the journal ends at event {seq}, but it was anchored at event {}: events {}..{} are missing (its tail was cut)",
                    head.seq,
                    seq + 1,
                    head.seq
                ));
            } else if *seq > head.seq && !record.held {
                checked.problems.push(format!(
                    "the journal goes on past event {}, where the run was last given up: events {}..{seq} were added outside tether",
                    head.seq,
                    head.seq + 1
                ));
            } else if *seq == head.seq && *hash != head.hash {
                checked
                    .problems
                    .push(format!("event {seq} is not the event the run was anchored at (its hash differs)"));
            }
        }
        (Some(_), None) if !record.held => {
            checked.problems.push("the run has no anchored head, so a cut tail cannot be ruled out".into())
        }
        (None, Some(head)) => {
            checked.problems.push(format!("the run's journal is empty, but it was anchored at event {}", head.seq))
        }
        _ => {}
    }
    let events = match verify_and_decode(run, &rows) {
        Ok(events) => events,
        Err(e) => {
            let text = e.to_string();
            let prefix = format!("run {run}: ");
            checked.problems.push(text.strip_prefix(&prefix).unwrap_or(&text).to_string());
            return Ok(checked);
        }
    };
    checked.head = events.last().map(|e| e.hash.clone());
    if events.is_empty() {
        if record.index_status.is_some() {
            checked.problems.push("the run index lists the run, but its journal holds no event".into());
        }
        return Ok(checked);
    }
    let expected = tether_types::state::index_status(&events);
    match record.index_status.as_deref() {
        None => checked.problems.push(format!(
            "the run index has no row for the run (its journal says `{}`): `tether runs` and `tether inbox` miss it",
            expected.as_str()
        )),
        Some(status) if status != expected.as_str() => checked.problems.push(format!(
            "the run index says `{status}`, but its journal says `{}`: the index was edited or damaged",
            expected.as_str()
        )),
        Some(_) => {}
    }
    Ok(checked)
}

impl App {
    /// What is wrong with a run's journal, each named; nothing if nothing is.
    pub async fn verify(&self, run: &tether_types::RunId) -> Result<Checked, AppError> {
        Ok(check(self.store.as_ref(), run.as_str()).await?)
    }

    /// [`App::verify`] for every run in the journal.
    pub async fn verify_all(&self) -> Result<Vec<Checked>, AppError> {
        let mut all = Vec::new();
        for run in self.store.run_ids().await? {
            all.push(check(self.store.as_ref(), &run).await?);
        }
        Ok(all)
    }
}
