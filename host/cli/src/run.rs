//! `tether run` and `tether resume`.

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

use tether_runtime::{Driver, Progress, StoredComponents};
use tether_types::store::JournalStore;
use tether_types::{RunId, RunReport, RunStatus, Workflow};

use crate::cli::{OutputArgs, ResumeArgs, RunArgs};
use crate::failure::driver_failure;
use crate::{output, Failure};

pub(crate) fn run(args: RunArgs) -> Result<ExitCode, Failure> {
    let input = read_input(&args.input)?;
    let mut workflow = read_workflow(&args.workflow)?;
    let run_id = match &args.run_id {
        Some(id) => RunId::try_from(id.clone()).map_err(|e| Failure::usage(format!("--run-id: {e}")))?,
        None => {
            RunId::from_suffix(&uuid::Uuid::now_v7().simple().to_string()).expect("a UUID is a valid run id suffix")
        }
    };
    let rt = crate::setup::async_runtime()?;
    rt.block_on(async {
        let driver = args.host.driver(crate::setup::leases(std::time::Duration::ZERO)?, true).await?;
        let base = args.workflow.parent().map(Path::to_path_buf).unwrap_or_default();
        let identity = args.identity.clone().or_else(|| workflow.identity.clone()).unwrap_or_else(|| "local".into());
        crate::policy::effective_policy(&mut workflow, args.policy.as_deref(), &base)?;
        let stored = stored_components(driver.store().as_ref(), driver.runtime(), &workflow).await?;
        let mut loaded =
            driver.runtime().load_workflow_with(workflow, &base, &stored).map_err(|e| Failure::usage(e.to_string()))?;
        tether_runtime::apply_identity(&mut loaded, &identity).map_err(Failure::usage)?;
        let total = loaded.plan.steps.len();
        let result = driver.start(&loaded, run_id.clone(), input, &identity, progress(&args.output, total)).await;
        finish(&driver, &run_id, result, &args.output).await
    })
}

pub(crate) fn resume(args: ResumeArgs) -> Result<ExitCode, Failure> {
    let rt = crate::setup::async_runtime()?;
    let leases = args.wait.leases(std::time::Duration::ZERO)?;
    rt.block_on(async {
        let driver = args.host.driver(leases, false).await?;
        let run = crate::run_id::resolve(&**driver.store(), &args.run).await?;
        let run_id = RunId::try_from(run).map_err(|e| Failure::usage(e.to_string()))?;
        let total = plan_steps(&driver, &run_id).await?;
        let raises = parse_raises(&args.budget)?;
        let result = driver.resume(run_id.as_str(), &raises, progress(&args.output, total)).await;
        finish(&driver, &run_id, result, &args.output).await
    })
}

pub(crate) fn progress(out: &OutputArgs, total: usize) -> impl FnMut(Progress<'_>) {
    let tty = std::io::stderr().is_terminal();
    let (json, verbose) = (out.json, out.verbose);
    move |p| {
        if json && !tty {
            return;
        }
        match p {
            // Printed once the start is durable: a run that could not start is not named.
            Progress::RunStarted { run_id } if !json => {
                eprintln!("run {run_id} started (resume it with `tether resume {run_id}` if interrupted)")
            }
            Progress::RunStarted { .. } => {}
            Progress::StepStarted { index, name } if tty => output::step_started(index, total, name),
            Progress::StepStarted { .. } => {}
            Progress::StepFinished { index, report, attempt, retry_in } => {
                output::step_finished(index, total, report, verbose, tty);
                output::attempt_note(attempt, retry_in);
            }
        }
    }
}

/// Prints the run's report, taken from the journal (so a resumed run shows every step,
/// including those run by an earlier process).
pub(crate) async fn finish(
    driver: &Driver,
    run_id: &RunId,
    result: Result<RunReport, tether_runtime::DriverError>,
    out: &OutputArgs,
) -> Result<ExitCode, Failure> {
    result.map_err(driver_failure)?;
    let report = driver.report(run_id.as_str()).await.map_err(driver_failure)?;
    if out.json {
        println!("{}", crate::output::json(&report));
    } else {
        output::run_summary(&report);
    }
    Ok(match report.status {
        RunStatus::Completed | RunStatus::Skipped => ExitCode::SUCCESS,
        RunStatus::Failed | RunStatus::Compensated | RunStatus::CompensationFailed => ExitCode::from(1),
        RunStatus::Paused | RunStatus::Waiting => ExitCode::from(3),
    })
}

/// How many steps the run's plan has, for progress lines.
pub(crate) async fn plan_steps(driver: &Driver, run_id: &RunId) -> Result<usize, Failure> {
    let events = driver.events(run_id.as_str()).await.map_err(driver_failure)?;
    let state =
        tether_types::state::RunState::fold(run_id.as_str(), &events).map_err(|e| Failure::Internal(e.to_string()))?;
    Ok(state.plan.steps.len().max(1))
}

/// `--budget METRIC=+N`: raises; `wall_time` takes a duration (`+30s`), others numbers.
fn parse_raises(args: &[String]) -> Result<Vec<(String, f64)>, Failure> {
    args.iter()
        .map(|a| {
            let bad = || {
                Failure::usage(format!("--budget `{a}`: write METRIC=+N, for example tokens=+5000 or wall_time=+30s"))
            };
            let (metric, amount) = a.split_once('=').ok_or_else(bad)?;
            let amount = amount.strip_prefix('+').ok_or_else(bad)?;
            let by = if metric == "wall_time" {
                humantime::parse_duration(amount).map_err(|_| bad())?.as_millis() as f64
            } else {
                amount.replace('_', "").parse::<f64>().ok().filter(|v| v.is_finite() && *v > 0.0).ok_or_else(bad)?
            };
            Ok((metric.to_string(), by))
        })
        .collect()
}

/// `--input`: JSON text, `@FILE`, or `@-` for stdin. Must be JSON.
fn read_input(arg: &str) -> Result<serde_json::Value, Failure> {
    let (text, origin) = match arg.strip_prefix('@') {
        Some("-") => (crate::files::read_stdin(crate::files::JSON_LIMIT, "the input")?, "stdin".to_string()),
        Some(path) => {
            let what = "the input file";
            (crate::files::read_text(Path::new(path), crate::files::JSON_LIMIT, what)?, path.to_string())
        }
        None => (arg.to_string(), "--input".to_string()),
    };
    serde_json::from_str(&text).map_err(|e| {
        Failure::usage(format!("{origin}: the input is not valid JSON: {e} (pass JSON text, or @FILE to read a file)"))
    })
}

pub(crate) fn read_workflow_text(path: &Path) -> Result<String, Failure> {
    if !path.exists() {
        return Err(Failure::usage(format!("{}: workflow file not found", path.display())));
    }
    crate::files::read_text(path, crate::files::TEXT_LIMIT, "the workflow file")
}

/// The components a workflow takes from the journal's store: deployed plugins
/// (`NAME@VERSION`) resolved to digests, and the bytes of those whose compiled form is not
/// in the cache (a deployed plugin's normally is, so nothing is read). References that do
/// not resolve are left out: loading the workflow reports them at their position.
pub(crate) async fn stored_components(
    store: &dyn JournalStore,
    runtime: &tether_runtime::Runtime,
    workflow: &Workflow,
) -> Result<StoredComponents, Failure> {
    let mut stored = StoredComponents::default();
    for reference in workflow.plugin_refs() {
        let Ok((name, version)) = tether_types::plugin_ref::parse(&reference) else { continue };
        let plugins = store.plugins(Some(name)).await.map_err(crate::failure::store_failure)?;
        if let Some(p) = plugins.into_iter().find(|p| p.version == version) {
            stored.plugins.insert(reference, p.digest);
        }
    }
    let mut digests = workflow.digest_refs();
    digests.extend(stored.plugins.values().cloned());
    for digest in digests {
        // Only what this journal holds: a run must be able to resume and replay from it.
        if !store.has_component(&digest).await.map_err(crate::failure::store_failure)? {
            continue;
        }
        if runtime.preload_compiled(&digest) {
            stored.preloaded.insert(digest);
        } else if let Some(bytes) = store.component(&digest).await.map_err(crate::failure::store_failure)? {
            stored.bytes.insert(digest, bytes.into());
        }
    }
    Ok(stored)
}

fn read_workflow(path: &Path) -> Result<Workflow, Failure> {
    let text = read_workflow_text(path)?;
    Workflow::parse(&path.display().to_string(), &text).map_err(|e| Failure::usage(e.to_string()))
}
