//! `tether cancel RUN`: the application cancels (journaled with who and why, completed
//! steps undone); here are its flags, what it says as it goes, and the report.

use std::process::ExitCode;

use tether_app::{AppError, CancelNote, CancelRequest, Cancelled};

use crate::cli::CancelArgs;
use crate::failure::Failure;

pub(crate) fn cancel(args: CancelArgs) -> Result<ExitCode, Failure> {
    let identity = crate::cli::required_identity(&args.identity)?;
    let wait = args.wait.duration(std::time::Duration::from_secs(30))?;
    crate::setup::async_runtime()?.block_on(async {
        // The lease is taken at once or not at all: a live holder gets a request instead.
        let app = args.host.app(crate::setup::leases(std::time::Duration::ZERO)?, false).await?;
        let request =
            CancelRequest { run: args.run.clone(), identity: identity.clone(), reason: args.reason.clone(), wait };
        let note = |n: CancelNote<'_>| match n {
            CancelNote::Recorded { run, earlier: Some(by) } => {
                eprintln!("run {run} was cancelled by {by}; finishing that")
            }
            CancelNote::Recorded { run, earlier: None } => {
                eprintln!("run {run}: cancelled by {identity}; undoing its completed steps")
            }
            CancelNote::AskedHolder { run, wait } => eprintln!(
                "run {run} is being executed by another process: asked it to cancel the run; waiting up to {}",
                humantime::format_duration(wait)
            ),
        };
        // How many steps, for progress lines: known once the run is found.
        let total = match app.resolve_run(&args.run).await {
            Ok(run) => crate::run::plan_steps(&app, &run).await?,
            Err(e) => return Err(e.into()),
        };
        let cancelled =
            app.cancel(&request, note, crate::run::progress(&args.output, total)).await.map_err(|e| match e {
                AppError::RunEnded { run, status } => {
                    Failure::usage(format!("run {run} has already ended ({status}); there is nothing to cancel"))
                }
                other => other.into(),
            })?;
        match cancelled {
            Cancelled::Ended(report) => {
                crate::run::print_report(&app, &report, &args.output).await?;
            }
            Cancelled::HeldElsewhere(busy) => eprintln!("{busy}; it continues the run from the journal"),
            Cancelled::StillRunning(run) => eprintln!(
                "run {run} has not ended yet; the request stands: the host executing it cancels it at its \
                 next check, or the next `tether resume` does"
            ),
        }
        Ok(ExitCode::SUCCESS)
    })
}
