//! `tether run` and `tether resume`.

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

use tether_app::{App, StartRequest};
use tether_runtime::Progress;
use tether_types::{RunId, RunReport, RunStatus, Workflow};

use crate::cli::{OutputArgs, ResumeArgs, RunArgs};
use crate::{output, Failure};

pub(crate) fn run(args: RunArgs) -> Result<ExitCode, Failure> {
    let input = read_input(&args.input)?;
    let workflow = read_workflow(&args.workflow)?;
    let run_id = match &args.run_id {
        Some(id) => Some(RunId::try_from(id.clone()).map_err(|e| Failure::usage(format!("--run-id: {e}")))?),
        None => None,
    };
    let rt = crate::setup::async_runtime()?;
    rt.block_on(async {
        let app = args.host.app(crate::setup::leases(std::time::Duration::ZERO)?, true).await?;
        let request = StartRequest {
            workflow,
            base: args.workflow.parent().map(Path::to_path_buf).unwrap_or_default(),
            policy_file: args.policy.clone(),
            identity: args.identity.clone(),
            input,
            run_id,
        };
        let prepared = app.prepare(request).await?;
        let total = prepared.steps();
        let report = app.start(prepared, progress(&args.output, total)).await?;
        print_report(&app, &report, &args.output).await
    })
}

pub(crate) fn resume(args: ResumeArgs) -> Result<ExitCode, Failure> {
    let rt = crate::setup::async_runtime()?;
    let leases = args.wait.leases(std::time::Duration::ZERO)?;
    rt.block_on(async {
        let app = args.host.app(leases, false).await?;
        let run_id = app.resolve_run(&args.run).await?;
        let total = plan_steps(&app, &run_id).await?;
        let raises = parse_raises(&args.budget)?;
        let report = app.resume(&run_id, &raises, progress(&args.output, total)).await?;
        print_report(&app, &report, &args.output).await
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

/// Prints a run's report (taken from the journal, so a resumed run shows every step,
/// including those run by an earlier process), with the command that continues a run
/// that stopped for more; the exit code its status implies.
pub(crate) async fn print_report(app: &App, report: &RunReport, out: &OutputArgs) -> Result<ExitCode, Failure> {
    let paused_on = match report.status {
        RunStatus::Paused => app.show(&report.run_id).await?.paused.map(|p| p.exceeded),
        _ => None,
    };
    Ok(print_report_with(report, out, paused_on))
}

/// [`print_report`], told which budget a paused run ran out of.
pub(crate) fn print_report_with(report: &RunReport, out: &OutputArgs, paused_on: Option<String>) -> ExitCode {
    let next = next_step(report, paused_on);
    if out.json {
        // Scripts get what a person reads after the summary: `next` names the command that
        // continues a run that stopped for more (absent once the run ended).
        let mut value = serde_json::to_value(report).expect("reports serialize");
        if let (Some(next), Some(object)) = (next, value.as_object_mut()) {
            object.insert("next".into(), serde_json::json!({ "what": next.what, "command": next.command }));
        }
        println!("{}", crate::output::json(&value));
    } else {
        output::run_summary(report);
        if let Some(next) = next {
            eprintln!("  {}", next.line);
        }
    }
    match report.status {
        RunStatus::Completed | RunStatus::Skipped => ExitCode::SUCCESS,
        RunStatus::Failed | RunStatus::Compensated | RunStatus::CompensationFailed => ExitCode::from(1),
        RunStatus::Paused | RunStatus::Waiting => ExitCode::from(3),
    }
}

/// What continues a run that stopped for more: what to do, the command that does it, and
/// the line a person reads.
struct Next {
    what: &'static str,
    command: String,
    line: String,
}

fn next_step(report: &RunReport, paused_on: Option<String>) -> Option<Next> {
    let run = &report.run_id;
    match report.status {
        RunStatus::Waiting => Some(Next {
            what: "decide",
            command: "tether inbox".into(),
            line: format!("decide: `tether inbox`, then `tether approve {run} GATE --as NAME` (or reject)"),
        }),
        RunStatus::Paused => {
            let metric = paused_on.unwrap_or_else(|| "METRIC".to_string());
            let command = format!("tether resume {run} --budget {metric}=+N");
            Some(Next { what: "raise it", line: format!("raise it: `{command}`"), command })
        }
        _ => None,
    }
}

/// How many steps the run's plan has, for progress lines.
pub(crate) async fn plan_steps(app: &App, run_id: &RunId) -> Result<usize, Failure> {
    let (state, _) = app.state(run_id).await?;
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
pub(crate) fn read_input(arg: &str) -> Result<serde_json::Value, Failure> {
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

fn read_workflow(path: &Path) -> Result<Workflow, Failure> {
    let text = read_workflow_text(path)?;
    Workflow::parse(&path.display().to_string(), &text).map_err(|e| Failure::usage(e.to_string()))
}
