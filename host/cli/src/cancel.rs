//! `tether cancel RUN`: a person's decision to stop a run, journaled under the run's
//! lease; then the run is continued here, which undoes its completed steps and ends it
//! `cancelled`. A cancel recorded by a process that was killed before the run ended is
//! finished by the next `cancel` or `resume`.

use std::process::ExitCode;

use tether_types::event::{Event, EventKind};
use tether_types::state::RunState;
use tether_types::RunId;

use crate::cli::CancelArgs;
use crate::failure::Failure;

pub(crate) fn cancel(args: CancelArgs) -> Result<ExitCode, Failure> {
    let leases = args.wait.leases(std::time::Duration::from_secs(10))?;
    crate::cli::async_runtime()?.block_on(async {
        let driver = args.host.driver(leases, false).await?;
        let run = crate::run_id::resolve(&**driver.store(), &args.run).await?;
        let run_id = RunId::try_from(run).map_err(|e| Failure::usage(e.to_string()))?;
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
                    // Cancelled before, and not yet ended: finish that cancellation.
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
        crate::govern::continue_run(&driver, &run_id, &args.output).await
    })
}
