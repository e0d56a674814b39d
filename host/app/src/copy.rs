//! Copying a journal to another (`tether copy`): SQLite to PostgreSQL when one machine is
//! no longer enough, or back, or to a fresh file.
//!
//! Every run's events are copied exactly as recorded (position, time, payload and hash),
//! after checking its chain in the source; the destination's run index and head anchor
//! follow from them as they did when the run was written. A run goes in one append that
//! takes and gives up its lease, so an unfinished run arrives free for the next worker to
//! take. The components its plan pins come with it, then the plugins and the API tokens
//! (their hashes: the tokens keep working). Cancel requests, which only matter to a host
//! executing a run, are not copied.
//!
//! A copy that was interrupted is run again: runs already in the destination with the
//! same last event are passed over. A run that cannot be copied (damaged in the source,
//! or different in the destination) is named with why, and the copy goes on with the
//! others. Runs a live host holds in the source stop the copy before it begins: stop the
//! workers first.

use serde::Serialize;
use tether_types::chain::{verify_and_decode, SealedEvent};
use tether_types::event::EventKind;
use tether_types::run_index::{plan_components, IndexChange};
use tether_types::store::{Append, Fence, JournalStore, LeaseChange, StoreError};
use tether_types::RunId;

use crate::AppError;

/// The lease owner copies are written as.
const COPY_OWNER: &str = "tether-copy";

/// What a copy did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Copied {
    /// Runs written to the destination.
    pub runs: usize,
    /// Runs already there, identical: passed over.
    pub present: usize,
    /// Events written.
    pub events: u64,
    /// Components written (bytes the destination did not have).
    pub components: usize,
    /// Plugins registered.
    pub plugins: usize,
    /// API tokens carried over.
    pub tokens: usize,
    /// Runs not copied, each with why.
    pub refused: Vec<RefusedRun>,
}

/// A run that was not copied.
#[derive(Clone, Debug, Serialize)]
pub struct RefusedRun {
    /// The run.
    pub run_id: String,
    /// Why, and what to do.
    pub why: String,
}

/// Copies everything in `from` to `to` (see the module documentation). `progress` is
/// told of each run before it is copied: its index, how many there are, and its id.
pub async fn copy(
    from: &dyn JournalStore,
    to: &dyn JournalStore,
    mut progress: impl FnMut(usize, usize, &str),
) -> Result<Copied, AppError> {
    let (now_us, held) = from.held_leases().await?;
    let live: Vec<String> = held.iter().filter(|l| l.expires_us > now_us).map(|l| l.run_id.clone()).collect();
    if !live.is_empty() {
        return Err(AppError::Busy(format!(
            "{} run(s) are being executed in the source journal now (first: {}); stop its workers, or wait for \
             the runs to stop, and copy again",
            live.len(),
            live[0]
        )));
    }
    let mut copied = Copied::default();
    let runs = from.run_ids().await?;
    for (index, run) in runs.iter().enumerate() {
        progress(index, runs.len(), run);
        match copy_run(from, to, run, &mut copied).await {
            Ok(()) => {}
            Err(AppError::Corrupt(why) | AppError::Busy(why)) => {
                copied.refused.push(RefusedRun { run_id: run.clone(), why });
            }
            Err(e) => return Err(e),
        }
    }
    for plugin in from.plugins(None).await? {
        let wasm = from.component(&plugin.digest).await?.ok_or_else(|| {
            AppError::Corrupt(format!(
                "plugin {}@{}: its component {} is not in the source journal",
                plugin.name, plugin.version, plugin.digest
            ))
        })?;
        if to.add_plugin(&plugin, &wasm).await? == tether_types::store::PluginAdded::Added {
            copied.plugins += 1;
        }
    }
    for token in from.tokens().await? {
        let hash = from.token_hash(&token.name).await?.ok_or_else(|| {
            AppError::Corrupt(format!("token `{}` vanished from the source journal during the copy", token.name))
        })?;
        let added = match to.token_hash(&token.name).await? {
            Some(there) if there == hash => false,
            Some(_) => {
                return Err(AppError::Corrupt(format!(
                    "token `{}`: the destination has another token by that name; revoke one of them and copy again",
                    token.name
                )))
            }
            None => {
                to.add_token(&token, &hash).await?;
                copied.tokens += 1;
                true
            }
        };
        // A revocation comes along too (made since an earlier copy included): a token
        // revoked in the source never works in the destination.
        if let Some(at_us) = token.revoked_us {
            let there = to.tokens().await?.into_iter().find(|t| t.name == token.name);
            if added || there.is_some_and(|t| t.revoked_us.is_none()) {
                to.revoke_token(&token.name, at_us).await?;
            }
        }
    }
    Ok(copied)
}

async fn copy_run(
    from: &dyn JournalStore,
    to: &dyn JournalStore,
    run: &str,
    copied: &mut Copied,
) -> Result<(), AppError> {
    let rows = from.events(run).await?;
    let events = verify_and_decode(run, &rows)
        .map_err(|e| AppError::Corrupt(format!("run {run} in the source journal: {e}; nothing of it was copied")))?;
    let Some(last) = rows.last() else {
        return Err(AppError::Corrupt(format!("run {run} in the source journal has no events; verify it")));
    };
    // A run whose tail was cut is not copied as if whole: its head says where it ended.
    if let Some(head) = from.run_record(run).await?.head {
        if head.seq > last.seq || (head.seq == last.seq && head.hash != last.hash) {
            return Err(AppError::Corrupt(format!(
                "run {run} in the source journal ends at event {}, but it was anchored at event {}: its tail was \
                 cut (`tether verify {run}` says more); nothing of it was copied",
                last.seq, head.seq
            )));
        }
    }
    if let Some(head) = to.run_record(run).await?.head {
        let there = match to.events(run).await {
            Ok(rows) => rows.last().map(|e| (e.seq, e.hash.clone())),
            Err(StoreError::UnknownRun(_)) => None,
            Err(e) => return Err(e.into()),
        };
        if there == Some((last.seq, last.hash.clone())) && head.seq <= last.seq {
            copied.present += 1;
            return Ok(());
        }
        return Err(AppError::Corrupt(format!(
            "run {run} is in the destination journal already, and differs from the source's (it ends at event {}, \
             the source's at event {}); copy into a journal without it",
            there.map_or(0, |(seq, _)| seq),
            last.seq
        )));
    }
    for event in &events {
        if let EventKind::RunStarted { plan, .. } = &event.kind {
            for digest in plan_components(plan) {
                if to.has_component(&digest).await? {
                    continue;
                }
                let wasm = from.component(&digest).await?.ok_or_else(|| {
                    AppError::Corrupt(format!("run {run}: its component {digest} is not in the source journal"))
                })?;
                to.put_component(&digest, &wasm).await?;
                copied.components += 1;
            }
        }
    }
    let sealed: Vec<SealedEvent> = rows
        .iter()
        .zip(&events)
        .map(|(row, event)| SealedEvent {
            seq: row.seq,
            at_us: row.at_us,
            kind: event.kind.name(),
            payload: std::sync::Arc::from(row.payload.as_str()),
            hash: row.hash.clone(),
            index: IndexChange::of(&event.kind),
        })
        .collect();
    let run_id = RunId::try_from(run.to_string()).map_err(AppError::Corrupt)?;
    let append = Append {
        lease: LeaseChange::TakeAndRelease { ttl_ms: 60_000 },
        run_id,
        fence: Fence { owner: COPY_OWNER.into(), epoch: 1 },
        events: sealed,
    };
    match to.append(append).await {
        Ok(()) => {}
        Err(StoreError::LeaseLost { .. } | StoreError::Conflict { .. }) => {
            return Err(AppError::Busy(format!(
                "run {run}: the destination journal holds events or a lease of it already (another copy, or a host \
                 writing it); copy into a journal no host uses and that does not have the run"
            )))
        }
        Err(e) => return Err(e.into()),
    }
    copied.runs += 1;
    copied.events += rows.len() as u64;
    Ok(())
}
