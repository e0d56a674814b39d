//! `tether cancel RUN`: a person's decision to stop a run, journaled under the run's
//! lease; then the run is continued here, which undoes its completed steps and ends it
//! `cancelled`. A cancel recorded by a process that was killed before the run ended is
//! finished by the next `cancel` or `resume`.
//!
//! A run another live process executes cannot be written here: the cancel is left as a
//! request that the executing host picks up within a fraction of a second (it interrupts
//! its attempts, journals the cancel and undoes), and this command waits for the end.

use std::process::ExitCode;

use tether_types::event::{Event, EventKind};
use tether_types::state::RunState;
use tether_types::RunId;

use crate::cli::CancelArgs;
use crate::failure::Failure;

pub(crate) fn cancel(args: CancelArgs) -> Result<ExitCode, Failure> {
    let wait = args.wait.duration(std::time::Duration::from_secs(30))?;
    crate::setup::async_runtime()?.block_on(async {
        // The lease is taken at once or not at all: a live holder gets a request instead.
        let driver = args.host.driver(crate::setup::leases(std::time::Duration::ZERO)?, false).await?;
        let run = crate::run_id::resolve(&**driver.store(), &args.run).await?;
        let run_id = RunId::try_from(run).map_err(|e| Failure::usage(e.to_string()))?;
        match record(&driver, &run_id, &args).await {
            Err(Failure::Busy(_)) => ask_the_holder(&driver, &run_id, &args, wait).await,
            Err(e) => Err(e),
            Ok(()) => crate::govern::continue_run(&driver, &run_id, &args.output).await,
        }
    })
}

/// Journals the cancel under the run's lease (taken at once, or `Busy`). A run cancelled
/// before and not yet ended is left as it is, to be finished.
async fn record(driver: &tether_runtime::Driver, run_id: &RunId, args: &CancelArgs) -> Result<(), Failure> {
    let mut earlier = None;
    driver
        .append_with(run_id.as_str(), |events: &[Event]| -> Result<Vec<EventKind>, Failure> {
            let state = RunState::fold(run_id.as_str(), events).map_err(|e| Failure::Internal(e.to_string()))?;
            if state.outcome.is_some() {
                let status = tether_types::state::index_status(events);
                return Err(Failure::usage(format!(
                    "run {run_id} has already ended ({}); there is nothing to cancel",
                    status.as_str()
                )));
            }
            if let Some((by, _)) = &state.cancelled {
                earlier = Some(by.clone());
                return Ok(Vec::new());
            }
            Ok(vec![EventKind::RunCancelled { by: args.identity.clone(), reason: args.reason.clone() }])
        })
        .await?;
    match earlier {
        Some(by) => eprintln!("run {run_id} was cancelled by {by}; finishing that"),
        None => eprintln!("run {run_id}: cancelled by {}; undoing its completed steps", args.identity),
    }
    Ok(())
}

/// The run is executed by another live process: leave a request it acts on, then wait
/// (up to `wait`) for the run to end, and report how it did.
async fn ask_the_holder(
    driver: &tether_runtime::Driver,
    run_id: &RunId,
    args: &CancelArgs,
    wait: std::time::Duration,
) -> Result<ExitCode, Failure> {
    let store = driver.store();
    store
        .request_cancel(run_id.as_str(), &args.identity, args.reason.as_deref())
        .await
        .map_err(crate::failure::store_failure)?;
    eprintln!(
        "run {run_id} is being executed by another process: asked it to cancel the run; waiting up to {}",
        humantime::format_duration(wait)
    );
    let until = std::time::Instant::now() + wait;
    loop {
        let rows = store.events(run_id.as_str()).await.map_err(crate::failure::store_failure)?;
        let events = tether_types::chain::verify_and_decode(run_id.as_str(), &rows)
            .map_err(|e| Failure::Internal(e.to_string()))?;
        let state = RunState::fold(run_id.as_str(), &events).map_err(|e| Failure::Internal(e.to_string()))?;
        if state.outcome.is_some() {
            break;
        }
        // The holder may have stopped (to wait for a human, or paused) without ending the
        // run: then the lease is free and the cancel is recorded here after all.
        if state.waiting || state.paused.is_some() {
            match record(driver, run_id, args).await {
                Err(Failure::Busy(_)) => {}
                Err(e) => return Err(e),
                Ok(()) => return crate::govern::continue_run(driver, run_id, &args.output).await,
            }
        }
        if std::time::Instant::now() >= until {
            eprintln!(
                "run {run_id} has not ended yet; the request stands: the host executing it cancels it at its \
                 next check, or the next `tether resume` does"
            );
            return Ok(ExitCode::SUCCESS);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let report = driver.report(run_id.as_str()).await.map_err(crate::failure::driver_failure)?;
    if args.output.json {
        println!("{}", crate::output::json(&report));
    } else {
        crate::output::run_summary(&report);
    }
    Ok(ExitCode::SUCCESS)
}
