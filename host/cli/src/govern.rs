//! Governance commands: `inbox`, `approve`, `reject`, `override` and `sweep`. The rules
//! (who may decide which gate, a gate decided once, an override counted once) are the
//! application's; here are their flags and output. Bad input (an unknown identity, an
//! approver without permission, a gate that is not waiting or was decided) changes
//! nothing and exits with code 2.

use std::path::Path;
use std::process::ExitCode;

use serde_json::Value;
use tether_app::{App, AppError, Continued, DecisionRequest, OverrideRequest};
use tether_types::policy::Decision;
use tether_types::state::ApprovalOutcome;
use tether_types::RunId;

use crate::cli::{ApproveArgs, DecideArgs, InboxArgs, OverrideArgs, SweepArgs};
use crate::output::{sanitize, utc};
use crate::Failure;

pub(crate) fn inbox(args: InboxArgs) -> Result<ExitCode, Failure> {
    crate::setup::async_runtime()?.block_on(async {
        let all = args.db.reader().await?.inbox().await?;
        let list: Vec<Value> = all.iter().map(tether_app::Pending::to_json).collect();
        print_inbox(&list, args.json);
        Ok(ExitCode::SUCCESS)
    })
}

/// Prints the pending requests (in the shape of `tether inbox --json`) as `tether inbox`
/// does.
pub(crate) fn print_inbox(list: &[Value], json: bool) {
    if json {
        println!("{}", crate::output::json(&list));
        return;
    }
    if list.is_empty() {
        eprintln!("no run is waiting for an approval");
        return;
    }
    let text = |v: &Value| v.as_str().unwrap_or("-").to_string();
    for p in list {
        let deadline = p["deadline_us"]
            .as_u64()
            .map(|d| format!(", deadline {} UTC (then {})", utc(d), text(&p["on_timeout"])))
            .unwrap_or_default();
        let approvers: Vec<String> = p["approved_by"].as_array().into_iter().flatten().map(text).collect();
        let votes =
            if approvers.is_empty() { String::new() } else { format!(", approved so far by {}", approvers.join(", ")) };
        let on = serde_json::from_value::<tether_types::policy::Checkpoint>(p["on"].clone())
            .map_or("proposal", |c| c.proposal());
        let (run, gate) = (text(&p["run_id"]), text(&p["gate"]));
        println!("{run}  {}  gate {gate}  ({})", text(&p["request"]), text(&p["workflow"]));
        println!(
            "    needs {} approval(s){votes}; waiting since {} UTC{deadline}",
            p["approvals_needed"].as_u64().unwrap_or(1),
            utc(p["since_us"].as_u64().unwrap_or(0))
        );
        println!("    proposes {on}: {}", sanitize(&p["proposal"].to_string()));
        println!("    decide: tether approve {run} {gate} --as NAME   (or tether reject ...)");
    }
}

pub(crate) fn approve(args: ApproveArgs) -> Result<ExitCode, Failure> {
    let payload = args.payload.as_deref().map(|p| read_json(p, "--payload")).transpose()?;
    decide(args.decide, Decision::Approve, payload)
}

pub(crate) fn reject(args: DecideArgs) -> Result<ExitCode, Failure> {
    decide(args, Decision::Reject, None)
}

/// Records a decision (checked by the application on the journal as it is under the
/// run's lease), then continues the run here, or leaves it to the process that holds it.
fn decide(args: DecideArgs, decision: Decision, payload: Option<Value>) -> Result<ExitCode, Failure> {
    let identity = crate::cli::required_identity(&args.identity)?;
    let rt = crate::setup::async_runtime()?;
    let leases = args.wait.leases(std::time::Duration::from_secs(10))?;
    rt.block_on(async {
        let app = args.host.app(leases, false).await?;
        let request = DecisionRequest {
            run: args.run.clone(),
            gate: args.gate.clone(),
            identity: identity.clone(),
            decision,
            payload,
            comment: args.comment.clone(),
            version: None,
        };
        let decided = app.decide(request).await.map_err(|e| match e {
            AppError::RunEnded { .. } => Failure::usage(format!("{e}; its requests can no longer be decided")),
            other => other.into(),
        })?;
        let (run_id, before, after) = (&decided.run_id, &decided.before, &decided.after);
        let what = match &after.outcome {
            None => format!("recorded; {} more approval(s) needed", before.needed - after.approvers.len() as u32),
            Some(ApprovalOutcome::Approved(_)) => "approved".into(),
            Some(ApprovalOutcome::Rejected { .. }) => "rejected".into(),
        };
        eprintln!("run {run_id}: {} by {identity}: {what}", before.id);
        // Continue unless the run is over or another decision is still needed (a host
        // killed while the run waited left it `running`; continuing is what resumes it).
        if !decided.settles() || args.no_continue {
            return Ok(ExitCode::SUCCESS);
        }
        continue_run(&app, run_id, &args.output).await
    })
}

/// Continues a run under its lease. A run another live process holds is left to it: the
/// decision is journaled, and that process (which took the run after it) goes on from it.
/// The command succeeded once the decision is recorded: how the run then ends is printed
/// (and is in `--json`), but a run that fails after a rejection does not make it exit 1.
pub(crate) async fn continue_run(
    app: &App,
    run_id: &RunId,
    output: &crate::cli::OutputArgs,
) -> Result<ExitCode, Failure> {
    let total = crate::run::plan_steps(app, run_id).await?;
    match app.continue_run(run_id, crate::run::progress(output, total)).await? {
        Continued::HeldElsewhere(busy) => {
            eprintln!("{busy}; it continues the run from the journal");
            Ok(ExitCode::SUCCESS)
        }
        Continued::Report(report) => {
            crate::run::print_report(app, &report, output).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub(crate) fn override_auto(args: OverrideArgs) -> Result<ExitCode, Failure> {
    let payload = args.payload.as_deref().map(|p| read_json(p, "--payload")).transpose()?;
    let leases = args.wait.leases(std::time::Duration::from_secs(10))?;
    crate::setup::async_runtime()?.block_on(async {
        let app = args.db.recorder(leases).await?;
        let request = OverrideRequest {
            run: args.run.clone(),
            gate: args.gate.clone(),
            identity: args.identity.clone(),
            payload,
            comment: args.comment.clone(),
        };
        let (run, approval) = app.override_auto(request).await?;
        if args.json {
            let doc =
                serde_json::json!({"run_id": run, "overridden": approval.id, "gate": approval.gate, "rearmed": true});
            println!("{}", crate::output::json(&doc));
        } else {
            eprintln!(
                "run {}: the automatic approval of {} is recorded as overridden; gate `{}` is re-armed",
                run, approval.id, approval.gate
            );
        }
        Ok(ExitCode::SUCCESS)
    })
}

pub(crate) fn sweep(args: SweepArgs) -> Result<ExitCode, Failure> {
    let leases = args.wait.leases(std::time::Duration::ZERO)?;
    crate::setup::async_runtime()?.block_on(async {
        let app = args.host.app(leases, false).await?;
        let mut continued = Vec::new();
        for id in app.runs_to_sweep(crate::output::now_us()).await? {
            if args.output.json {
                // One JSON document for the whole sweep: each continued run's report.
                if let Continued::Report(report) = app.continue_run(&id, |_| {}).await? {
                    continued.push(serde_json::to_value(report).map_err(|e| Failure::Internal(e.to_string()))?);
                }
            } else {
                continue_run(&app, &id, &args.output).await?;
                continued.push(Value::Null);
            }
        }
        if args.output.json {
            println!("{}", crate::output::json(&serde_json::json!({ "continued": continued })));
        } else {
            eprintln!("{} waiting run(s) continued", continued.len());
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// JSON text, or `@FILE`.
pub(crate) fn read_json(arg: &str, flag: &str) -> Result<Value, Failure> {
    let text = match arg.strip_prefix('@') {
        Some(path) => crate::files::read_text(Path::new(path), crate::files::JSON_LIMIT, flag)?,
        None => arg.to_string(),
    };
    serde_json::from_str(&text).map_err(|e| Failure::usage(format!("{flag}: not valid JSON: {e}")))
}
