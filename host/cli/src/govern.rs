//! Governance commands: `inbox`, `approve`, `reject`, `override` and `sweep`, plus
//! reading the policy a run is started with (`--policy`, `policy_file`, `[policy]`).
//!
//! A decision is checked against the policy the run pinned when it started (who may
//! decide which gate), appended to the run's journal, and then the run continues in
//! this process. Bad input (an unknown identity, an approver without permission, a gate
//! that is not waiting or was decided) changes nothing and exits with code 2.

use std::path::Path;
use std::process::ExitCode;

use serde_json::{json, Value};
use tether_runtime::Driver;
use tether_types::policy::Decision;
use tether_types::state::{Approval, ApprovalOutcome, RunState};
use tether_types::store::RunIndexStatus;
use tether_types::{Event, EventKind, RunId};

use crate::cli::{ApproveArgs, DecideArgs, InboxArgs, OverrideArgs, SweepArgs};
use crate::failure::{driver_failure, store_failure};
use crate::output::{sanitize, utc};
use crate::Failure;

/// A pending request, with where and since when.
struct Pending {
    run_id: String,
    workflow: String,
    since_us: u64,
    approval: Approval,
}

fn pending_of(run_id: &str, events: &[Event]) -> Result<Vec<Pending>, Failure> {
    let state = RunState::fold(run_id, events).map_err(|e| Failure::Internal(e.to_string()))?;
    Ok(state
        .pending_approvals()
        .map(|a| Pending {
            run_id: run_id.to_string(),
            workflow: state.plan.workflow.clone(),
            since_us: requested_at(events, &a.id),
            approval: a.clone(),
        })
        .collect())
}

fn requested_at(events: &[Event], id: &str) -> u64 {
    events
        .iter()
        .rev()
        .find(|e| matches!(&e.kind, EventKind::ApprovalRequested { id: i, .. } if i == id))
        .map_or(0, |e| e.at_us)
}

pub(crate) fn inbox(args: InboxArgs) -> Result<ExitCode, Failure> {
    crate::setup::async_runtime()?.block_on(async {
        let store = args.db.open_existing().await?;
        let runs = tether_types::store::JournalStore::runs(&store, Some(RunIndexStatus::Waiting), 10_000)
            .await
            .map_err(store_failure)?;
        let mut all = Vec::new();
        for r in runs {
            let rows = tether_types::store::JournalStore::events(&store, &r.run_id).await.map_err(store_failure)?;
            let events = tether_types::chain::verify_and_decode(&r.run_id, &rows)
                .map_err(|e| Failure::Internal(e.to_string()))?;
            all.extend(pending_of(&r.run_id, &events)?);
        }
        all.sort_by_key(|p| p.since_us);
        if args.json {
            let list: Vec<Value> = all
                .iter()
                .map(|p| {
                    let a = &p.approval;
                    json!({
                        "run_id": p.run_id, "workflow": p.workflow, "request": a.id, "gate": a.gate,
                        "step": a.step, "call": a.call, "on": a.on, "proposal": a.proposal,
                        "approvals_needed": a.needed, "approved_by": a.approvers, "class": a.class,
                        "since_us": p.since_us, "deadline_us": a.deadline_us, "on_timeout": a.on_timeout,
                    })
                })
                .collect();
            println!("{}", crate::output::json(&list));
            return Ok(ExitCode::SUCCESS);
        }
        if all.is_empty() {
            eprintln!("no run is waiting for an approval");
            return Ok(ExitCode::SUCCESS);
        }
        for p in &all {
            let a = &p.approval;
            let deadline = a
                .deadline_us
                .map(|d| format!(", deadline {} UTC (then {})", utc(d), a.on_timeout.as_str()))
                .unwrap_or_default();
            let votes = if a.approvers.is_empty() {
                String::new()
            } else {
                format!(", approved so far by {}", a.approvers.join(", "))
            };
            println!("{}  {}  gate {}  ({})", p.run_id, a.id, a.gate, p.workflow);
            println!("    needs {} approval(s){votes}; waiting since {} UTC{deadline}", a.needed, utc(p.since_us));
            println!("    proposes {}: {}", a.on.proposal(), sanitize(&a.proposal.to_string()));
            println!("    decide: tether approve {} {} --as NAME   (or tether reject ...)", p.run_id, a.gate);
        }
        Ok(ExitCode::SUCCESS)
    })
}

pub(crate) fn approve(args: ApproveArgs) -> Result<ExitCode, Failure> {
    let payload = args.payload.as_deref().map(|p| read_json(p, "--payload")).transpose()?;
    decide(args.decide, Decision::Approve, payload)
}

pub(crate) fn reject(args: DecideArgs) -> Result<ExitCode, Failure> {
    decide(args, Decision::Reject, None)
}

/// Records a decision under the run's lease: the gate is checked on the journal as it
/// is while nobody else can write it, so two deciders cannot both decide a one-approval
/// gate (the second is told who got there first). Then the run continues, under the
/// lease, here or in whichever process holds it.
fn decide(args: DecideArgs, decision: Decision, payload: Option<Value>) -> Result<ExitCode, Failure> {
    let rt = crate::setup::async_runtime()?;
    let leases = args.wait.leases(std::time::Duration::from_secs(10))?;
    rt.block_on(async {
        let driver = args.host.driver(leases, false).await?;
        let run = crate::run_id::resolve(&**driver.store(), &args.run).await?;
        let run_id = RunId::try_from(run).map_err(|e| Failure::usage(e.to_string()))?;
        let mut seen = None;
        driver
            .append_with(run_id.as_str(), |events: &[Event]| -> Result<Vec<EventKind>, Failure> {
                let state = RunState::fold(run_id.as_str(), events).map_err(|e| Failure::Internal(e.to_string()))?;
                let ended = || {
                    let status = tether_types::state::index_status(events);
                    Failure::usage(format!(
                        "run {run_id} has ended ({}); its requests can no longer be decided",
                        if state.outcome.is_some() { status.as_str() } else { "cancelled" }
                    ))
                };
                let over = state.outcome.is_some() || state.cancelled.is_some();
                let approval = match find(&state, &args.gate, run_id.as_str()) {
                    Ok(approval) => approval,
                    Err(_) if over => return Err(ended()),
                    Err(e) => return Err(e),
                };
                if approval.outcome.is_some() {
                    return Err(Failure::usage(format!(
                        "run {run_id}: request {} at gate `{}` was already decided by {}; see `tether history {run_id}`",
                        approval.id,
                        approval.gate,
                        deciders(events, &approval.id)
                    )));
                }
                if over {
                    return Err(ended());
                }
                check_approver(&state, &args.identity, &approval.gate)?;
                if decision == Decision::Approve && approval.approvers.contains(&args.identity) {
                    return Err(Failure::usage(format!(
                        "{} already approved request {}; gate `{}` needs {} different approvers",
                        args.identity, approval.id, approval.gate, approval.needed
                    )));
                }
                let event = EventKind::ApprovalDecided {
                    id: approval.id.clone(),
                    gate: approval.gate.clone(),
                    step: approval.step.clone(),
                    call: approval.call,
                    by: args.identity.clone(),
                    decision,
                    payload,
                    comment: args.comment.clone(),
                    evidence: None,
                };
                let mut decided = approval.clone();
                decided.decide(&event);
                seen = Some((approval, decided, state.outcome.is_some()));
                Ok(vec![event])
            })
            .await?;
        let Some((approval, decided, finished)) = seen else {
            return Err(Failure::Internal("the decision was not recorded".into()));
        };
        let what = match &decided.outcome {
            None => format!("recorded; {} more approval(s) needed", approval.needed - decided.approvers.len() as u32),
            Some(ApprovalOutcome::Approved(_)) => "approved".into(),
            Some(ApprovalOutcome::Rejected { .. }) => "rejected".into(),
        };
        eprintln!("run {run_id}: {} by {}: {what}", approval.id, args.identity);
        // Continue unless the run is over or another decision is still needed (a host
        // killed while the run waited left it `running`; continuing is what resumes it).
        if decided.outcome.is_none() || args.no_continue || finished {
            return Ok(ExitCode::SUCCESS);
        }
        continue_run(&driver, &run_id, &args.output).await
    })
}

/// Who decided a request, from its `approval_decided` events.
fn deciders(events: &[Event], id: &str) -> String {
    let by: Vec<&str> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ApprovalDecided { id: i, by, .. } if i == id => Some(by.as_str()),
            _ => None,
        })
        .collect();
    if by.is_empty() {
        "nobody".into()
    } else {
        by.join(" and ")
    }
}

/// Continues a run under its lease. A run another live process holds is left to it: the
/// decision is journaled, and that process (which took the run after it) goes on from it.
/// The command succeeded once the decision is recorded: how the run then ends is printed
/// (and is in `--json`), but a run that fails after a rejection does not make it exit 1.
pub(crate) async fn continue_run(
    driver: &Driver,
    run_id: &RunId,
    output: &crate::cli::OutputArgs,
) -> Result<ExitCode, Failure> {
    let total = crate::run::plan_steps(driver, run_id).await?;
    match driver.resume(run_id.as_str(), &[], crate::run::progress(output, total)).await {
        Err(tether_runtime::DriverError::Busy(busy)) => {
            eprintln!("{busy}; it continues the run from the journal");
            Ok(ExitCode::SUCCESS)
        }
        result => crate::run::finish(driver, run_id, result, output).await.map(|_| ExitCode::SUCCESS),
    }
}

/// The pending (or decided) request `gate` names: a request id, or a gate the run has
/// exactly one request at.
fn find(state: &RunState, gate: &str, run_id: &str) -> Result<Approval, Failure> {
    if let Some(a) = state.approvals.get(gate) {
        return Ok(a.clone());
    }
    let at_gate: Vec<&Approval> = state.approvals.values().filter(|a| a.gate == gate).collect();
    let open: Vec<&&Approval> = at_gate.iter().filter(|a| a.outcome.is_none()).collect();
    match (open.as_slice(), at_gate.as_slice()) {
        ([one], _) => Ok((**one).clone()),
        ([], [one]) => Ok((*one).clone()),
        ([], []) => {
            let waiting: Vec<String> = state.pending_approvals().map(|a| format!("{} ({})", a.gate, a.id)).collect();
            let hint = if waiting.is_empty() {
                "it is not waiting for any approval".to_string()
            } else {
                format!("it waits at: {}", waiting.join(", "))
            };
            Err(Failure::usage(format!("run {run_id} has no request at gate `{gate}`; {hint}")))
        }
        ([], several) => {
            let ids: Vec<&str> = several.iter().map(|a| a.id.as_str()).collect();
            Err(Failure::usage(format!("gate `{gate}` has several decided requests; name one: {}", ids.join(", "))))
        }
        (several, _) => {
            let ids: Vec<&str> = several.iter().map(|a| a.id.as_str()).collect();
            Err(Failure::usage(format!(
                "run {run_id} waits at gate `{gate}` more than once; name the request: {}",
                ids.join(", ")
            )))
        }
    }
}

fn check_approver(state: &RunState, identity: &str, gate: &str) -> Result<(), Failure> {
    let policy = state.plan.policy.clone().unwrap_or_default();
    if !policy.identities.contains_key(identity) {
        let known: Vec<&str> = policy.identities.keys().map(String::as_str).collect();
        return Err(Failure::usage(format!(
            "identity `{identity}` is not declared by the run's policy (it declares: {})",
            if known.is_empty() { "none".to_string() } else { known.join(", ") }
        )));
    }
    if !policy.may_approve(identity, gate) {
        let allowed: Vec<&str> =
            policy.identities.keys().filter(|i| policy.may_approve(i, gate)).map(String::as_str).collect();
        return Err(Failure::usage(format!(
            "identity `{identity}` may not decide gate `{gate}` (allowed: {}); grant it with approves = [\"{gate}\"] \
             in the policy, for runs started after that: a run keeps the policy it started with",
            if allowed.is_empty() { "nobody".to_string() } else { allowed.join(", ") }
        )));
    }
    Ok(())
}

pub(crate) fn override_auto(args: OverrideArgs) -> Result<ExitCode, Failure> {
    let payload = args.payload.as_deref().map(|p| read_json(p, "--payload")).transpose()?;
    let leases = args.wait.leases(std::time::Duration::from_secs(10))?;
    crate::setup::async_runtime()?.block_on(async {
        let store: std::sync::Arc<dyn tether_types::store::JournalStore> = std::sync::Arc::new(args.db.open_existing().await?);
        let mut overridden = None;
        let run = crate::run_id::resolve(&*store, &args.run).await?;
        tether_runtime::append_with(&store, leases, &run, |events: &[Event]| -> Result<Vec<EventKind>, Failure> {
            let state = RunState::fold(&run, events).map_err(|e| Failure::Internal(e.to_string()))?;
            let approval = find(&state, &args.gate, &run)?;
            let auto = events.iter().any(|e| {
                matches!(&e.kind, EventKind::ApprovalDecided { id, evidence: Some(_), .. } if *id == approval.id)
            });
            if !auto {
                return Err(Failure::usage(format!(
                    "request {} was not approved automatically; only a relaxed gate's own approvals can be overridden after the fact",
                    approval.id
                )));
            }
            let before = events.iter().find_map(|e| match &e.kind {
                EventKind::ApprovalOverridden { id, by, .. } if *id == approval.id => Some(by.clone()),
                _ => None,
            });
            if let Some(by) = before {
                return Err(Failure::usage(format!(
                    "request {} was already overridden (by {by}); an automatic approval counts against its gate once",
                    approval.id
                )));
            }
            check_approver(&state, &args.identity, &approval.gate)?;
            let event = EventKind::ApprovalOverridden {
                id: approval.id.clone(),
                gate: approval.gate.clone(),
                by: args.identity.clone(),
                payload,
                comment: args.comment.clone(),
            };
            overridden = Some(approval);
            Ok(vec![event])
        })
        .await?;
        if let (Some(approval), true) = (&overridden, args.json) {
            let doc = serde_json::json!({"run_id": run, "overridden": approval.id, "gate": approval.gate, "rearmed": true});
            println!("{}", crate::output::json(&doc));
        } else if let Some(approval) = overridden {
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
        let driver = args.host.driver(leases, false).await?;
        let runs = driver.store().runs(Some(RunIndexStatus::Waiting), 10_000).await.map_err(store_failure)?;
        let now = crate::output::now_us();
        let mut continued = Vec::new();
        for r in runs {
            let events = driver.events(&r.run_id).await.map_err(driver_failure)?;
            let state = RunState::fold(&r.run_id, &events).map_err(|e| Failure::Internal(e.to_string()))?;
            let due = state.pending_approvals().any(|a| a.deadline_us.is_some_and(|d| d <= now));
            let decided =
                state.approvals.values().any(|a| a.outcome.is_some()) && state.pending_approvals().next().is_none();
            if !(due || decided) {
                continue;
            }
            let id = RunId::try_from(r.run_id.clone()).map_err(Failure::usage)?;
            if args.output.json {
                // One JSON document for the whole sweep: each continued run's report.
                match driver.resume(id.as_str(), &[], |_| {}).await {
                    Err(tether_runtime::DriverError::Busy(_)) => continue,
                    result => {
                        result.map_err(driver_failure)?;
                    }
                }
                continued.push(
                    serde_json::to_value(driver.report(id.as_str()).await.map_err(driver_failure)?)
                        .map_err(|e| Failure::Internal(e.to_string()))?,
                );
            } else {
                continue_run(&driver, &id, &args.output).await?;
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
fn read_json(arg: &str, flag: &str) -> Result<Value, Failure> {
    let text = match arg.strip_prefix('@') {
        Some(path) => crate::files::read_text(Path::new(path), crate::files::JSON_LIMIT, flag)?,
        None => arg.to_string(),
    };
    serde_json::from_str(&text).map_err(|e| Failure::usage(format!("{flag}: not valid JSON: {e}")))
}
