//! Applying each written event's [`IndexChange`] to the run index (`runs`) and the
//! components a run pins (`run_components`), in the transaction that writes the event.
//! What an event changes is decided in `tether-types`; here it only becomes SQL, a few
//! statements per batch whatever its size (a statement per event would cost a prepare
//! each). Every row applies only if its append was written: a refused append changes
//! nothing.

use sqlx::{QueryBuilder, Sqlite};
use tether_types::run_index::{IndexChange, RunIndexStatus};
use tether_types::store::Append;

/// Whether any of these appends changes the index (then they need a transaction).
pub(crate) fn changes_index(appends: &[&Append]) -> bool {
    appends.iter().any(|a| a.events.iter().any(|e| e.index.is_some()))
}

/// Bound parameters per statement stay under SQLite's 32,766.
const ROWS_PER_STATEMENT: usize = 4000;

/// A new run's row.
struct Start<'a> {
    append: &'a Append,
    workflow: &'a str,
    identity: &'a str,
    started_us: u64,
}

/// What one append does to its run's status, all its changes taken together.
struct StatusChange<'a> {
    append: &'a Append,
    status: RunIndexStatus,
    /// The end time, if the run ends here.
    finished_us: Option<u64>,
    /// Only if the row has one of these statuses now (comma-separated); any if `None`.
    only_from: Option<String>,
}

/// Pushes the index statements for a batch of appends: the new rows, the pinned
/// components, then the status changes.
pub(crate) fn push_index(q: &mut QueryBuilder<Sqlite>, appends: &[&Append]) {
    let mut starts = Vec::new();
    let mut pins: Vec<(&Append, &str)> = Vec::new();
    let mut changes = Vec::new();
    for a in appends {
        // What the append's changes come to, in order: known once a change sets the
        // status outright (or the run starts); until then, conditional on the row.
        let mut net: Option<StatusChange> = None;
        let mut updates = false;
        for e in &a.events {
            match &e.index {
                None => {}
                Some(IndexChange::Start { workflow, identity, components }) => {
                    starts.push(Start { append: a, workflow, identity, started_us: e.at_us });
                    pins.extend(components.iter().map(|c| (*a, c.as_str())));
                    let running = RunIndexStatus::Running;
                    net = Some(StatusChange { append: a, status: running, finished_us: None, only_from: None });
                }
                Some(change @ IndexChange::Status { status, finished, only_from }) => {
                    updates = true;
                    let finished_us = finished.then_some(e.at_us);
                    let only_from = (!only_from.is_empty())
                        .then(|| only_from.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(","));
                    net = Some(match net {
                        // Known before: settled here.
                        Some(known) if known.only_from.is_none() => {
                            let after = change.apply(known.status);
                            let finished_us = if after == known.status { known.finished_us } else { finished_us };
                            StatusChange { append: a, status: after, finished_us, only_from: None }
                        }
                        // Conditional after conditional: the first condition decides both.
                        Some(cond) if only_from.is_some() => cond,
                        _ => StatusChange { append: a, status: *status, finished_us, only_from },
                    });
                }
            }
        }
        // A new run's `running` is its INSERT; only a change after it needs an UPDATE.
        if let Some(change) = net.filter(|_| updates) {
            changes.push(change);
        }
    }
    for chunk in starts.chunks(ROWS_PER_STATEMENT) {
        q.push(
            " INSERT INTO runs (run_id, workflow, status, identity, started_us) \
             SELECT v.column1, v.column2, 'running', v.column3, v.column4 FROM (",
        );
        q.push_values(chunk, |mut b, s| {
            b.push_bind(s.append.run_id.as_str())
                .push_bind(s.workflow)
                .push_bind(s.identity)
                .push_bind(s.started_us as i64);
            written(&mut b, s.append);
        });
        q.push(") AS v WHERE");
        exists(q, 5);
    }
    for chunk in pins.chunks(ROWS_PER_STATEMENT) {
        q.push(" INSERT OR IGNORE INTO run_components (run_id, digest) SELECT v.column1, v.column2 FROM (");
        q.push_values(chunk, |mut b, (a, digest)| {
            b.push_bind(a.run_id.as_str()).push_bind(*digest);
            written(&mut b, a);
        });
        q.push(") AS v WHERE");
        exists(q, 3);
    }
    // An UPDATE ... FROM changes a row once, whichever of its matching rows SQLite picks:
    // a run with several appends in the batch gets one statement per append, in order
    // (round k holds each run's k-th change). Nearly always there is one round.
    let mut rounds: Vec<Vec<StatusChange>> = Vec::new();
    let mut seen: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for change in changes {
        let round = seen.entry(change.append.run_id.as_str()).or_default();
        if rounds.len() <= *round {
            rounds.push(Vec::new());
        }
        rounds[*round].push(change);
        *round += 1;
    }
    for chunk in rounds.iter().flat_map(|round| round.chunks(ROWS_PER_STATEMENT)) {
        q.push(" UPDATE runs SET status = v.column2, finished_us = coalesce(v.column3, runs.finished_us) FROM (");
        q.push_values(chunk, |mut b, c| {
            b.push_bind(c.append.run_id.as_str())
                .push_bind(c.status.as_str())
                .push_bind(c.finished_us.map(|f| f as i64))
                .push_bind(c.only_from.as_deref());
            written(&mut b, c.append);
        });
        q.push(
            ") AS v WHERE runs.run_id = v.column1 \
             AND (v.column4 IS NULL OR instr(',' || v.column4 || ',', ',' || runs.status || ',') > 0) AND",
        );
        exists(q, 5);
    }
}

/// The append's last event (its position and hash): the append was written if the
/// journal holds exactly it.
fn written(b: &mut sqlx::query_builder::Separated<'_, Sqlite, &'static str>, a: &Append) {
    let last = a.events.last().expect("an index change comes with an event");
    b.push_bind(last.seq as i64).push_bind(last.hash.as_str());
}

/// ` EXISTS (...)`: the event in columns `at` (seq) and `at + 1` (hash) of `v` is written.
fn exists(q: &mut QueryBuilder<Sqlite>, at: usize) {
    q.push(format!(
        " EXISTS (SELECT 1 FROM events e WHERE e.run_id = v.column1 AND e.seq = v.column{at} \
         AND e.hash = v.column{});",
        at + 1
    ));
}

/// The smallest string above every string starting with `prefix`: `prefix` with its last
/// character raised by one (none if it cannot be). Both stores find the runs whose id
/// starts with a prefix as the key range `[prefix, prefix_end)`.
pub(crate) fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        if let Some(next) = char::from_u32(last as u32 + 1) {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}
