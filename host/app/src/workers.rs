//! Who is executing what (`tether workers`): every host with a heartbeat on the journal,
//! and every host holding run leases, judged by the journal's clock. A host whose
//! heartbeat has lapsed is marked: the next worker that looks takes its runs over.

use serde::Serialize;
use tether_types::store::{HostBeat, Lease};

use crate::{App, AppError};

/// A host on the journal.
#[derive(Clone, Debug, Serialize)]
pub struct WorkerView {
    /// The lease owner: `HOST/pid:PID/start:TICKS`.
    pub owner: String,
    /// Its host part (`$TETHER_HOST_ID` or the machine's name).
    pub host: String,
    /// Its process id, when the owner names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Milliseconds since its last heartbeat; `None` if it has none (it left, or holds
    /// leases it took without beating yet).
    pub beat_ms_ago: Option<i64>,
    /// Milliseconds since its first heartbeat.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub up_ms: Option<i64>,
    /// Whether its heartbeat (and every lease it holds) has lapsed: dead, frozen or cut
    /// off. Its runs go to the next worker that looks.
    pub lapsed: bool,
    /// The runs it holds.
    pub runs: Vec<HeldRun>,
}

/// One run a worker holds.
#[derive(Clone, Debug, Serialize)]
pub struct HeldRun {
    /// The run.
    pub run_id: String,
    /// The lease's epoch.
    pub epoch: u64,
    /// Milliseconds until the lease lapses unless its holder beats again (negative:
    /// lapsed that long ago).
    pub lapses_in_ms: i64,
}

impl App {
    /// Every host on the journal, by owner.
    pub async fn workers(&self) -> Result<Vec<WorkerView>, AppError> {
        let (now_us, hosts) = self.store.hosts().await?;
        let (_, leases) = self.store.held_leases().await?;
        Ok(group(now_us, hosts, leases))
    }
}

fn group(now_us: u64, hosts: Vec<HostBeat>, leases: Vec<Lease>) -> Vec<WorkerView> {
    let ms = |later: u64, earlier: u64| (later as i64 - earlier as i64) / 1000;
    let mut workers: std::collections::BTreeMap<String, WorkerView> = std::collections::BTreeMap::new();
    let view = |owner: &str| {
        let mut parts = owner.rsplitn(3, '/');
        let (_, pid, host) = (parts.next(), parts.next(), parts.next());
        WorkerView {
            owner: owner.to_string(),
            host: host.unwrap_or(owner).to_string(),
            pid: pid.and_then(|p| p.strip_prefix("pid:")).and_then(|p| p.parse().ok()),
            beat_ms_ago: None,
            up_ms: None,
            lapsed: true,
            runs: Vec::new(),
        }
    };
    for h in hosts {
        let w = workers.entry(h.owner.clone()).or_insert_with(|| view(&h.owner));
        w.beat_ms_ago = Some(ms(now_us, h.beat_us));
        w.up_ms = Some(ms(now_us, h.since_us));
        w.lapsed = h.expires_us <= now_us;
    }
    for lease in leases {
        let w = workers.entry(lease.owner.clone()).or_insert_with(|| view(&lease.owner));
        let lapses_in_ms = ms(lease.expires_us, now_us);
        if lapses_in_ms > 0 {
            w.lapsed = false;
        }
        w.runs.push(HeldRun { run_id: lease.run_id, epoch: lease.epoch, lapses_in_ms });
    }
    workers.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(run: &str, owner: &str, expires_us: u64) -> Lease {
        Lease { run_id: run.into(), owner: owner.into(), epoch: 1, expires_us }
    }

    fn beat(owner: &str, beat_us: u64, expires_us: u64) -> HostBeat {
        HostBeat { owner: owner.into(), since_us: beat_us - 60_000_000, beat_us, expires_us }
    }

    #[test]
    fn hosts_are_listed_with_their_runs_and_one_whose_heartbeat_lapsed_is_marked() {
        let now = 100_000_000;
        let workers = group(
            now,
            vec![
                beat("worker-a/pid:7/start:9", now - 2_000_000, now + 28_000_000),
                beat("worker-b/pid:8/start:3", now - 40_000_000, now - 10_000_000),
                beat("worker-c/pid:9/start:1", now - 1_000_000, now + 29_000_000),
            ],
            vec![
                lease("run_a", "worker-a/pid:7/start:9", now + 28_000_000),
                lease("run_b", "worker-a/pid:7/start:9", now + 28_000_000),
                lease("run_c", "worker-b/pid:8/start:3", now - 10_000_000),
                lease("run_d", "old-host/pid:5/start:2", now + 5_000_000),
            ],
        );
        let owners: Vec<&str> = workers.iter().map(|w| w.host.as_str()).collect();
        assert_eq!(owners, ["old-host", "worker-a", "worker-b", "worker-c"]);
        let a = &workers[1];
        assert_eq!((a.pid, a.runs.len(), a.beat_ms_ago, a.lapsed), (Some(7), 2, Some(2000), false));
        assert_eq!(a.runs[0].lapses_in_ms, 28_000);
        assert!(workers[2].lapsed, "a heartbeat 40 s old with a 30 s lifetime has lapsed");
        assert_eq!(workers[2].runs[0].lapses_in_ms, -10_000);
        assert!(workers[3].runs.is_empty() && !workers[3].lapsed, "an idle worker is listed, live");
        assert_eq!((workers[0].beat_ms_ago, workers[0].lapsed), (None, false), "a lease's own expiry keeps it");
    }
}
