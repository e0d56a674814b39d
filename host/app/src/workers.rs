//! Who is executing what: every host holding run leases now, from the journal's leases
//! and judged by the journal's clock (`tether workers`). A worker that holds nothing is
//! not listed: liveness is a lease, not a registration.

use serde::Serialize;
use tether_types::store::Lease;

use crate::{App, AppError};

/// A host holding leases.
#[derive(Clone, Debug, Serialize)]
pub struct WorkerView {
    /// The lease owner: `HOST/pid:PID/start:TICKS`.
    pub owner: String,
    /// Its host part (`$TETHER_HOST_ID` or the machine's name).
    pub host: String,
    /// Its process id, when the owner names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Whether every one of its leases has lapsed (it stopped renewing: dead, frozen or
    /// cut off); its runs go to the next host that looks.
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
    /// Milliseconds until the lease lapses unless renewed (negative: lapsed that long ago).
    pub lapses_in_ms: i64,
}

impl App {
    /// Every host holding run leases now, by owner.
    pub async fn workers(&self) -> Result<Vec<WorkerView>, AppError> {
        let (now_us, leases) = self.store.held_leases().await?;
        Ok(group(now_us, leases))
    }
}

fn group(now_us: u64, leases: Vec<Lease>) -> Vec<WorkerView> {
    let mut workers: Vec<WorkerView> = Vec::new();
    for lease in leases {
        let run = HeldRun {
            run_id: lease.run_id,
            epoch: lease.epoch,
            lapses_in_ms: (lease.expires_us as i64 - now_us as i64) / 1000,
        };
        match workers.last_mut() {
            Some(w) if w.owner == lease.owner => w.runs.push(run),
            _ => {
                let mut parts = lease.owner.rsplitn(3, '/');
                let (_, pid, host) = (parts.next(), parts.next(), parts.next());
                let pid = pid.and_then(|p| p.strip_prefix("pid:")).and_then(|p| p.parse().ok());
                let host = host.unwrap_or(&lease.owner).to_string();
                workers.push(WorkerView { owner: lease.owner, host, pid, lapsed: false, runs: vec![run] });
            }
        }
    }
    for w in &mut workers {
        w.lapsed = w.runs.iter().all(|r| r.lapses_in_ms <= 0);
    }
    workers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(run: &str, owner: &str, expires_us: u64) -> Lease {
        Lease { run_id: run.into(), owner: owner.into(), epoch: 1, expires_us }
    }

    #[test]
    fn leases_are_grouped_by_owner_and_a_worker_whose_every_lease_lapsed_is_marked() {
        let now = 10_000_000;
        let workers = group(
            now,
            vec![
                lease("run_a", "worker-a/pid:7/start:9", now + 1_500_000),
                lease("run_b", "worker-a/pid:7/start:9", now - 1),
                lease("run_c", "worker-b/pid:8/start:3", now - 2_000_000),
            ],
        );
        assert_eq!(workers.len(), 2);
        assert_eq!((workers[0].host.as_str(), workers[0].pid, workers[0].runs.len()), ("worker-a", Some(7), 2));
        assert_eq!(workers[0].runs[0].lapses_in_ms, 1500);
        assert!(!workers[0].lapsed, "one lease still live");
        assert!(workers[1].lapsed);
        assert_eq!(workers[1].runs[0].lapses_in_ms, -2000);
    }
}
