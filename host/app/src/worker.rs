//! A worker: the long-lived host that `tether serve` runs.
//!
//! It executes runs under a concurrency limit, continues what the journal says is due
//! without anyone running a sweep (an approval's deadline passed, a request decided),
//! takes over interrupted runs whose host is gone (claimed from the store, as many as it
//! has free slots, so workers looking at once share them out), keeps its presence on
//! the journal with one heartbeat for all its runs, and stops gracefully: nothing new is taken, no run starts another attempt, running
//! attempts get a grace period to end, and each run is left durable with its lease given
//! up, for the next worker to resume.
//!
//! One process takes a run's lease once: a run this worker executes is never taken
//! again here (the lease's owner is the process, so a second take would succeed and
//! fence the first out). A wake-up for a run it executes is remembered and acted on
//! when the run stops.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tether_runtime::{Drain, DriverError, Progress, StartOptions};
use tether_types::store::RunIndexStatus;
use tether_types::{Origin, RunId};
use tokio::sync::{oneshot, Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics::Metrics;
use crate::{App, AppError, Prepared};

/// How a worker works.
#[derive(Clone, Copy, Debug)]
pub struct WorkerConfig {
    /// Runs executing at once; more wait for a slot (their start is durable meanwhile).
    pub concurrency: usize,
    /// How often interrupted runs are looked for, and due deadlines fired.
    pub tick: Duration,
    /// How often every waiting run's deadlines are read again (decisions made through
    /// this worker continue their run at once).
    pub rescan: Duration,
    /// How long running attempts get to end when the worker stops.
    pub grace: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            concurrency: 32,
            tick: Duration::from_secs(1),
            rescan: Duration::from_secs(10),
            grace: Duration::from_secs(30),
        }
    }
}

/// What submitting a run came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Submitted {
    /// A new run; its start is durable.
    Started(RunId),
    /// A run by this id exists already (a repeated idempotency key): nothing new started.
    Existing(RunId),
}

/// How the worker's stop ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stopped {
    /// Runs that stopped within the grace period (ended, waiting, or left at an attempt
    /// boundary).
    pub settled: usize,
    /// Runs whose attempts were still running at the grace period's end: interrupted,
    /// to be resumed from their journal.
    pub interrupted: usize,
}

/// A long-lived host of runs. See the module documentation.
pub struct Worker {
    app: Arc<App>,
    config: WorkerConfig,
    slots: Arc<Semaphore>,
    /// Runs this worker executes now; `true` once a wake-up came meanwhile.
    held: Mutex<HashMap<String, bool>>,
    tasks: TaskTracker,
    drain: Drain,
    /// Cancelled when the grace period ends: run tasks still going are dropped.
    hard_stop: CancellationToken,
    /// Deadlines of waiting runs, from the last rescan: when each is due.
    deadlines: Mutex<BTreeMap<u64, Vec<RunId>>>,
    wake_timers: Notify,
    /// Set when another process decided a waiting run's approval: rescan now.
    rescan_soon: std::sync::atomic::AtomicBool,
    metrics: Metrics,
    /// Runs whose continuing failed in the host, with how often and when to try again:
    /// taken over with a growing pause rather than every tick.
    failures: Mutex<HashMap<String, (u32, tokio::time::Instant)>>,
    /// Counts runs that stopped here (ended, waited, paused): what follows a run waits on
    /// it, so it sees the run's end at once rather than at its next look.
    stops: tokio::sync::watch::Sender<u64>,
    /// This process's heartbeat on the journal, kept for the worker's life (so that it is
    /// listed as live while idle).
    presence: Arc<tether_runtime::Presence>,
}

impl Worker {
    /// A worker over `app`. Nothing happens until [`Worker::run_timers`] is spawned and
    /// runs are submitted or woken.
    pub fn new(app: Arc<App>, config: WorkerConfig) -> Arc<Worker> {
        let presence = tether_runtime::presence(app.store(), app.leases().ttl);
        Arc::new(Worker {
            presence,
            app,
            slots: Arc::new(Semaphore::new(config.concurrency.max(1))),
            config,
            held: Mutex::default(),
            tasks: TaskTracker::new(),
            drain: Drain::default(),
            hard_stop: CancellationToken::new(),
            deadlines: Mutex::default(),
            wake_timers: Notify::new(),
            rescan_soon: std::sync::atomic::AtomicBool::new(false),
            metrics: Metrics::default(),
            failures: Mutex::default(),
            stops: tokio::sync::watch::Sender::new(0),
        })
    }

    /// The application the worker executes runs with.
    pub fn app(&self) -> &Arc<App> {
        &self.app
    }

    /// What the worker counts, for `/metrics`.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Whether the worker is stopping (it takes no new work).
    pub fn stopping(&self) -> bool {
        self.drain.started()
    }

    /// Changes each time a run stops here (see `stops`).
    pub fn stops(&self) -> tokio::sync::watch::Receiver<u64> {
        self.stops.subscribe()
    }

    /// Completes once the worker is stopping.
    pub async fn stopped(&self) {
        self.drain.wait().await;
    }

    /// Runs executing here now, and runs waiting for a slot.
    pub fn in_flight(&self) -> usize {
        lock(&self.held).len()
    }

    /// Starts a prepared run. Returns once its start is durable (or it failed to start);
    /// it then executes here when a slot is free. A run id that exists already (a
    /// repeated idempotency key) starts nothing and is returned as [`Submitted::Existing`].
    pub async fn submit(self: &Arc<Self>, run: Prepared, origin: Origin) -> Result<Submitted, AppError> {
        if self.stopping() {
            return Err(AppError::Stopping);
        }
        let id = run.run_id.clone();
        let Some(held) = self.hold(&id, false) else {
            return Ok(Submitted::Existing(id));
        };
        if self.app.store().run_record(id.as_str()).await?.index_status.is_some() {
            return Ok(Submitted::Existing(id));
        }
        let (started_tx, started) = oneshot::channel::<Result<(), AppError>>();
        let worker = Arc::clone(self);
        // The slot the run takes once its start is durable, given back when its task ends.
        let slot: Arc<Mutex<Option<OwnedSemaphorePermit>>> = Arc::default();
        let (slots, taken, drain) = (Arc::clone(&self.slots), Arc::clone(&slot), self.drain.clone());
        let options = StartOptions {
            origin: Some(origin),
            // A stop while it waits lets it go at once: it then starts no attempt.
            admission: Some(Box::pin(async move {
                tokio::select! {
                    permit = slots.acquire_owned() => *lock(&taken) = permit.ok(),
                    () = drain.wait() => {}
                }
            })),
            drain: Some(self.drain.clone()),
        };
        let task_id = id.clone();
        let workflow = run.workflow_name().to_string();
        self.tasks.spawn(async move {
            let held = held;
            let mut started_tx = Some(started_tx);
            let metrics = &worker.metrics;
            let progress = |p: Progress<'_>| match p {
                Progress::RunStarted { .. } => {
                    if let Some(tx) = started_tx.take() {
                        let _ = tx.send(Ok(()));
                    }
                }
                Progress::StepFinished { report, .. } => metrics.step_finished(&workflow, &report.stats),
                Progress::StepStarted { .. } => {}
            };
            let work = worker.app.start_with(run, options, progress);
            let result = tokio::select! {
                r = work => Some(r),
                () = worker.hard_stop.cancelled() => None,
            };
            lock(&slot).take();
            // Not executing any more: decisions may be taken on it from here.
            drop(held);
            match result {
                Some(Ok(report)) => {
                    worker.metrics.run_stopped(&workflow, report.status);
                    worker.note_waiting(&report).await;
                }
                // Refused before its start was durable: the caller is told. After that,
                // the run's journal says what happened.
                Some(Err(e)) => match started_tx.take() {
                    Some(tx) => {
                        let _ = tx.send(Err(e));
                    }
                    None => worker.failed(&task_id, &e),
                },
                None => {}
            }
        });
        match started.await {
            Ok(Ok(())) => Ok(Submitted::Started(id)),
            // Started by another host with the same id meanwhile.
            Ok(Err(AppError::Driver(DriverError::Exists(_)) | AppError::Busy(_))) => Ok(Submitted::Existing(id)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(AppError::Corrupt(format!("run {id}: its task ended before its start was durable"))),
        }
    }

    /// Continues a run here if nobody executes it: after a decision or a cancel, when a
    /// deadline passed, or an interrupted run was found. A run this worker executes now
    /// is continued again when it stops (its raises are then not applied: `false`).
    /// `false` too once the worker is stopping. `raises` add to its run budgets.
    pub fn wake(self: &Arc<Self>, run: RunId, raises: Vec<(String, f64)>) -> bool {
        self.wake_raising(run, raises, None)
    }

    /// [`Worker::wake`], the raises journaled as asked for by `requested_by`.
    pub fn wake_raising(
        self: &Arc<Self>,
        run: RunId,
        raises: Vec<(String, f64)>,
        requested_by: Option<String>,
    ) -> bool {
        self.wake_with(run, raises, requested_by, None)
    }

    /// [`Worker::wake_raising`] for a run whose lease `claimed` this worker took from the
    /// store: it is given back when the task ends. (The resume takes the lease again at a
    /// new epoch, after which giving up the claimed epoch changes nothing; a task that
    /// ends before resuming, stopping or failing, leaves the run free for any worker.)
    fn wake_with(
        self: &Arc<Self>,
        run: RunId,
        raises: Vec<(String, f64)>,
        requested_by: Option<String>,
        claimed: Option<tether_types::store::Lease>,
    ) -> bool {
        if self.stopping() {
            return false;
        }
        let Some(held) = self.hold(&run, true) else { return raises.is_empty() };
        let worker = Arc::clone(self);
        self.tasks.spawn(async move {
            worker.continue_run(held, run, raises, requested_by).await;
            if let Some(lease) = claimed {
                if let Err(e) = worker.app.store().release_lease(&lease).await {
                    tracing::debug!("run {}: giving back the claimed lease: {e}", lease.run_id);
                }
            }
        });
        true
    }

    /// Continues a run held here: waits for a slot, resumes it, and again if it was woken
    /// meanwhile.
    async fn continue_run(
        self: &Arc<Self>,
        held: Held,
        run: RunId,
        raises: Vec<(String, f64)>,
        requested_by: Option<String>,
    ) {
        let worker = self;
        {
            let held = held;
            let mut raises = raises;
            let workflow = match worker.app.state(&run).await {
                Ok((state, _)) => state.plan.workflow.clone(),
                Err(_) => String::new(),
            };
            loop {
                let permit = tokio::select! {
                    permit = worker.slots.acquire() => permit,
                    () = worker.drain.wait() => break,
                };
                let Ok(permit) = permit else { break };
                let metrics = &worker.metrics;
                let progress = |p: Progress<'_>| {
                    if let Progress::StepFinished { report, .. } = p {
                        metrics.step_finished(&workflow, &report.stats);
                    }
                };
                let work = async {
                    let driver = worker.app.driver()?;
                    let who = requested_by.as_deref().filter(|_| !raises.is_empty());
                    Ok::<_, AppError>(
                        driver.resume_with(run.as_str(), &raises, who, Some(&worker.drain), progress).await?,
                    )
                };
                let result = tokio::select! {
                    r = work => Some(r),
                    () = worker.hard_stop.cancelled() => None,
                };
                drop(permit);
                raises = Vec::new();
                // Woken again while it ran: look once more (it may have stopped to wait
                // just as a decision came).
                let again = lock(&worker.held).get_mut(run.as_str()).map(std::mem::take).unwrap_or(false);
                if again && !worker.stopping() && result.as_ref().is_some_and(|r| r.is_ok()) {
                    continue;
                }
                drop(held);
                match result {
                    Some(Ok(report)) => {
                        worker.metrics.run_stopped(&workflow, report.status);
                        lock(&worker.failures).remove(run.as_str());
                        worker.note_waiting(&report).await;
                    }
                    Some(Err(e @ AppError::Busy(_))) => {
                        worker.failed(&run, &e);
                        worker.retry_when_lapsed(&run).await;
                    }
                    Some(Err(e)) => worker.failed(&run, &e),
                    None => {}
                }
                break;
            }
        }
    }

    /// A waiting run that could go on (a decision, a deadline) but another host holds:
    /// tried again once that host's lease would have lapsed, in case it is gone (killed,
    /// frozen) with the run still waiting. A run the other host continues is no longer
    /// waiting by then, and is left alone.
    async fn retry_when_lapsed(&self, run: &RunId) {
        let waiting = match self.app.store().run_record(run.as_str()).await {
            Ok(record) => record.index_status.as_deref() == Some(RunIndexStatus::Waiting.as_str()),
            Err(e) => {
                tracing::warn!("run {run}: reading its status: {e}");
                return;
            }
        };
        if waiting {
            let at = now_us() + self.app.leases().ttl.as_micros() as u64;
            lock(&self.deadlines).entry(at).or_default().push(run.clone());
            self.wake_timers.notify_one();
        }
    }

    /// Does `work` on a run (records a decision or a cancel) while this worker is not
    /// executing it, and keeps the worker from taking it meanwhile: this process owns
    /// every lease it takes, so two takes here would fence each other out. A run
    /// executing here is `Busy`, as it is for any other host; a cancel is asked for
    /// instead (see [`crate::App::cancel`]).
    pub async fn exclusive<T>(
        self: &Arc<Self>,
        run: &RunId,
        work: impl std::future::Future<Output = Result<T, AppError>>,
    ) -> Result<T, AppError> {
        let Some(held) = self.hold(run, false) else {
            return Err(AppError::Busy(format!(
                "run {run} is executing on this server now; ask again once it waits or stops"
            )));
        };
        let result = work.await;
        drop(held);
        result
    }

    /// Whether this worker executes the run now.
    pub fn executes(&self, run: &RunId) -> bool {
        lock(&self.held).contains_key(run.as_str())
    }

    /// Looks for work the journal says is due, until the worker stops: interrupted runs
    /// nobody executes (every `tick`), and waiting runs whose deadline passed or whose
    /// requests are all decided (read every `rescan`, fired on time in between).
    pub async fn run_timers(self: Arc<Self>) {
        self.presence.beat_now(self.app.leases().ttl).await;
        let mut next_rescan = tokio::time::Instant::now();
        // Work made by another process on the journal is pushed where the store can
        // (PostgreSQL): a decision or a run that stopped to wait makes the rescan run at
        // once instead of at its next turn; a run given up unfinished is claimed at once.
        let me = Arc::downgrade(&self);
        let pushed = self.app.store().on_wakeup(Box::new(move |wakeup| {
            if let Some(worker) = me.upgrade() {
                if !matches!(wakeup, tether_types::store::Wakeup::Interrupted(_)) {
                    worker.rescan_soon.store(true, std::sync::atomic::Ordering::Release);
                }
                worker.wake_timers.notify_one();
            }
        }));
        if pushed {
            tracing::debug!("work made elsewhere is pushed to this worker");
        }
        loop {
            if self.stopping() {
                return;
            }
            if let Err(e) = self.take_over().await {
                tracing::warn!("looking for interrupted runs: {e}");
            }
            let soon = self.rescan_soon.swap(false, std::sync::atomic::Ordering::AcqRel);
            if soon || tokio::time::Instant::now() >= next_rescan {
                if let Err(e) = self.take_over_from_the_dead().await {
                    tracing::warn!("looking for runs of hosts that are gone: {e}");
                }
                if let Err(e) = self.rescan().await {
                    tracing::warn!("reading waiting runs' deadlines: {e}");
                }
                next_rescan = tokio::time::Instant::now() + self.config.rescan;
            }
            self.fire_due();
            let sleep = self.until_next_due().min(self.config.tick);
            tokio::select! {
                () = tokio::time::sleep(sleep) => {}
                () = self.wake_timers.notified() => {}
            }
        }
    }

    /// Stops: takes nothing new, lets running attempts end for up to the grace period
    /// (no run starts another), then interrupts what is left. Every run is left with its
    /// journal durable, to be resumed by the next worker.
    pub async fn stop(&self) -> Stopped {
        self.drain.start();
        self.wake_timers.notify_one();
        self.tasks.close();
        let before = self.in_flight();
        let stopped = if tokio::time::timeout(self.config.grace, self.tasks.wait()).await.is_err() {
            let interrupted = self.in_flight();
            self.hard_stop.cancel();
            self.tasks.wait().await;
            Stopped { settled: before.saturating_sub(interrupted), interrupted }
        } else {
            Stopped { settled: before, interrupted: 0 }
        };
        // Every run here gave its lease up: others need not wait for this host's
        // heartbeat to lapse, and `tether workers` no longer lists it.
        self.presence.leave().await;
        stopped
    }

    /// Runs left interrupted (index `running`) that nobody executes, claimed from the
    /// store up to this worker's free slots and continued here. Runs whose continuing
    /// failed here lately are left to their pause (and to other workers).
    async fn take_over(self: &Arc<Self>) -> Result<(), AppError> {
        let store = self.app.store();
        let now = tokio::time::Instant::now();
        let waiting: Vec<String> =
            lock(&self.failures).iter().filter(|(_, (_, at))| *at > now).map(|(run, _)| run.clone()).collect();
        let ttl_ms = self.app.leases().ttl.as_millis().max(1) as u64;
        let free = self.slots.available_permits();
        let owner = tether_runtime::owner_id();
        for lease in store.claim_interrupted(owner, ttl_ms, free, &waiting).await? {
            let run = RunId::try_from(lease.run_id.clone()).map_err(AppError::Corrupt)?;
            tracing::info!("run {run}: interrupted and held by nobody; taken over (lease epoch {})", lease.epoch);
            self.metrics.taken_over();
            if !self.wake_with(run, Vec::new(), None, Some(lease.clone())) {
                // Stopping: give it back for the next worker.
                store.release_lease(&lease).await?;
            }
        }
        Ok(())
    }

    /// Interrupted runs whose holder is a process on this machine that is gone (killed):
    /// taken over at once rather than when its heartbeat lapses. Read at start and with
    /// every rescan.
    async fn take_over_from_the_dead(self: &Arc<Self>) -> Result<(), AppError> {
        let store = self.app.store();
        let (_, held) = store.held_leases().await?;
        for lease in held {
            if !tether_runtime::known_dead(&lease.owner) || lock(&self.held).contains_key(&lease.run_id) {
                continue;
            }
            let status = store.run_record(&lease.run_id).await?.index_status;
            if status.as_deref() != Some(RunIndexStatus::Running.as_str()) {
                continue;
            }
            let run = RunId::try_from(lease.run_id).map_err(AppError::Corrupt)?;
            tracing::info!("run {run}: its host {} is gone; taking it over", lease.owner);
            self.wake(run, Vec::new());
        }
        Ok(())
    }

    /// Reads every waiting run: those that can go on now are woken, the others' earliest
    /// deadlines noted.
    async fn rescan(self: &Arc<Self>) -> Result<(), AppError> {
        let mut deadlines: BTreeMap<u64, Vec<RunId>> = BTreeMap::new();
        let now = now_us();
        let store = self.app.store();
        // A cancel asked for while another host (or this one) executed a run that then
        // stopped to wait or pause: it is finished here.
        for summary in store.runs(Some(RunIndexStatus::Paused), 100_000).await? {
            if store.cancel_request(&summary.run_id).await?.is_some() {
                let run = RunId::try_from(summary.run_id).map_err(AppError::Corrupt)?;
                self.wake(run, Vec::new());
            }
        }
        for summary in store.runs(Some(RunIndexStatus::Waiting), 100_000).await? {
            let Ok(run) = RunId::try_from(summary.run_id.clone()) else { continue };
            if store.cancel_request(run.as_str()).await?.is_some() {
                self.wake(run, Vec::new());
                continue;
            }
            // One unreadable run must not keep the others' deadlines from firing.
            let state = match self.app.state(&run).await {
                Ok((state, _)) => state,
                Err(e) => {
                    tracing::warn!("run {run}: cannot read it to find its deadlines: {e}");
                    continue;
                }
            };
            let decided =
                state.approvals.values().any(|a| a.outcome.is_some()) && state.pending_approvals().next().is_none();
            let due = state.pending_approvals().filter_map(|a| a.deadline_us).min();
            match due {
                _ if decided => {
                    self.wake(run, Vec::new());
                }
                Some(at) if at <= now => {
                    self.wake(run, Vec::new());
                }
                Some(at) => deadlines.entry(at).or_default().push(run),
                None => {}
            }
        }
        // Deadlines noted meanwhile by runs that stopped to wait are kept.
        let mut current = lock(&self.deadlines);
        for (at, runs) in deadlines {
            let known = current.entry(at).or_default();
            for run in runs {
                if !known.contains(&run) {
                    known.push(run);
                }
            }
        }
        Ok(())
    }

    /// A run that stopped to wait for people: its earliest deadline is noted, so it is
    /// fired on time without waiting for the next rescan.
    async fn note_waiting(&self, report: &tether_types::RunReport) {
        if report.status != tether_types::RunStatus::Waiting {
            return;
        }
        match self.app.state(&report.run_id).await {
            Ok((state, _)) => {
                if let Some(at) = state.pending_approvals().filter_map(|a| a.deadline_us).min() {
                    lock(&self.deadlines).entry(at).or_default().push(report.run_id.clone());
                    self.wake_timers.notify_one();
                }
            }
            Err(e) => tracing::warn!("run {}: reading its deadlines: {e}", report.run_id),
        }
    }

    fn fire_due(self: &Arc<Self>) {
        let now = now_us();
        let due: Vec<RunId> = {
            let mut deadlines = lock(&self.deadlines);
            let later = deadlines.split_off(&(now + 1));
            std::mem::replace(&mut *deadlines, later).into_values().flatten().collect()
        };
        for run in due {
            tracing::info!(
                "run {run}: due (an approval deadline passed, or a host holding it may be gone); continuing it"
            );
            self.wake(run, Vec::new());
        }
    }

    fn until_next_due(&self) -> Duration {
        let now = now_us();
        lock(&self.deadlines).keys().next().map_or(Duration::MAX, |at| Duration::from_micros(at.saturating_sub(now)))
    }

    /// Marks a run as executing here, until the guard is dropped; `None` if it is
    /// already, and then a wake-up is noted for when it stops (if `note_wake`).
    fn hold(self: &Arc<Self>, run: &RunId, note_wake: bool) -> Option<Held> {
        match lock(&self.held).entry(run.to_string()) {
            std::collections::hash_map::Entry::Occupied(mut again) => {
                if note_wake {
                    *again.get_mut() = true;
                }
                None
            }
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(false);
                Some(Held { worker: Arc::clone(self), run: run.clone() })
            }
        }
    }

    /// Forgets that the run executes here; `true` if it was woken meanwhile.
    fn release(&self, run: &RunId) -> bool {
        lock(&self.held).remove(run.as_str()).unwrap_or(false)
    }
}

/// A run marked as executing here; the mark goes (and a wake-up that came meanwhile is
/// acted on) when the guard is dropped, however the holder ends: finished, failed, or
/// dropped with the request that held it (a client that hung up).
struct Held {
    worker: Arc<Worker>,
    run: RunId,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.worker.stops.send_modify(|n| *n += 1);
        if self.worker.release(&self.run) {
            self.worker.wake(self.run.clone(), Vec::new());
        }
    }
}

impl Worker {
    /// A run task ended without the run's own outcome (which its journal holds): a run
    /// that failed in the host is tried again after a pause that doubles each time, up
    /// to 5 minutes, so a run that cannot go on does not fill the journal with resumes.
    fn failed(&self, run: &RunId, e: &AppError) {
        match e {
            AppError::Busy(_) => tracing::debug!("run {run}: another host executes it"),
            AppError::Driver(DriverError::Stopped) => {
                tracing::info!("run {run}: left to resume (the worker is stopping)")
            }
            other => {
                let mut failures = lock(&self.failures);
                let (count, retry_at) = failures.entry(run.to_string()).or_insert((0, tokio::time::Instant::now()));
                *count += 1;
                let pause = Duration::from_secs(1 << (*count).min(8)).min(Duration::from_secs(300));
                *retry_at = tokio::time::Instant::now() + pause;
                tracing::warn!("run {run}: {other} (tried {count} time(s); next try in {}s)", pause.as_secs());
            }
        }
    }
}

/// Microseconds since the Unix epoch, as the journal's deadlines are written.
fn now_us() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
