//! `tether show RUN`: one run at a glance — its status, output or error, what it waits
//! on (approvals, with who still must decide and by when, or the budget that ran out),
//! its steps and totals, and the command that continues it. Read from the journal alone.

use std::process::ExitCode;

use serde::Serialize;
use serde_json::Value;
use tether_types::event::{Event, EventKind};
use tether_types::state::{index_status, RunState};
use tether_types::store::{JournalStore, RunIndexStatus};

use crate::cli::ShowArgs;
use crate::failure::store_failure;
use crate::output::{fuel, json, micros, rfc3339, sanitize};
use crate::Failure;

/// What `show` prints, and its `--json` document.
#[derive(Serialize)]
struct View {
    run_id: String,
    workflow: String,
    identity: String,
    status: &'static str,
    /// RFC 3339.
    started: String,
    /// RFC 3339, once over.
    #[serde(skip_serializing_if = "Option::is_none")]
    finished: Option<String>,
    input: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<Value>,
    /// Approval requests not yet decided.
    waiting_on: Vec<Pending>,
    /// The run budget that ran out, while paused.
    #[serde(skip_serializing_if = "Option::is_none")]
    paused: Option<Paused>,
    steps: Vec<StepView>,
    totals: Totals,
    /// The command that continues the run, if anything does.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

#[derive(Serialize)]
struct Pending {
    approval: String,
    gate: String,
    step: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    call: Option<u32>,
    needed: u32,
    approved_by: Vec<String>,
    /// RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    deadline: Option<String>,
    on_timeout: &'static str,
    proposal: Value,
}

#[derive(Serialize)]
struct Paused {
    step: String,
    exceeded: String,
}

#[derive(Serialize)]
struct StepView {
    step: String,
    status: &'static str,
    attempts: u32,
}

#[derive(Serialize)]
struct Totals {
    fuel: u64,
    wall_ms: f64,
    tool_calls: u64,
    usage: std::collections::BTreeMap<String, f64>,
}

pub(crate) fn show(args: ShowArgs) -> Result<ExitCode, Failure> {
    crate::setup::async_runtime()?.block_on(async {
        let store = args.db.open_existing().await?;
        let run = crate::run_id::resolve(&store, &args.run).await?;
        let rows = store.events(&run).await.map_err(store_failure)?;
        let events =
            tether_types::chain::verify_and_decode(&run, &rows).map_err(|e| Failure::Internal(e.to_string()))?;
        let state = RunState::fold(&run, &events).map_err(|e| Failure::Internal(e.to_string()))?;
        let view = view(&run, &state, &events);
        if args.json {
            println!("{}", json(&view));
        } else {
            print_text(&view);
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn view(run: &str, state: &RunState, events: &[Event]) -> View {
    let status = index_status(events);
    let workflow = match events.first().map(|e| &e.kind) {
        Some(EventKind::RunStarted { workflow, .. }) => workflow.clone(),
        _ => "-".into(),
    };
    let started_us = events.first().map_or(0, |e| e.at_us);
    let over = !matches!(status, RunIndexStatus::Running | RunIndexStatus::Paused | RunIndexStatus::Waiting);
    let (output, error) = match &state.outcome {
        Some(Ok(v)) => (Some(v.clone()), None),
        Some(Err(e)) => (None, serde_json::to_value(e).ok()),
        None => (None, None),
    };
    let waiting_on: Vec<Pending> = state
        .approvals
        .values()
        .filter(|a| a.outcome.is_none() && !over)
        .map(|a| Pending {
            approval: a.id.clone(),
            gate: a.gate.clone(),
            step: a.step.clone(),
            call: a.call,
            needed: a.needed,
            approved_by: a.approvers.clone(),
            deadline: a.deadline_us.map(rfc3339),
            on_timeout: a.on_timeout.as_str(),
            proposal: a.proposal.clone(),
        })
        .collect();
    let paused =
        state.paused.as_ref().map(|(step, exceeded)| Paused { step: step.clone(), exceeded: exceeded.clone() });
    // Each run of a step (and each skip), in the order the journal first names it.
    let mut keys: Vec<&str> = Vec::new();
    for e in events {
        if let EventKind::StepAttemptStarted { step, .. } | EventKind::StepSkipped { step, .. } = &e.kind {
            if !keys.contains(&step.as_str()) {
                keys.push(step);
            }
        }
    }
    let steps = keys
        .into_iter()
        .map(|key| {
            let (status, attempts) = match (state.instances.get(key), state.resolved.get(key)) {
                (_, Some(tether_types::state::Resolved::Skipped(_))) => ("skipped", 0),
                (Some(i), resolved) => {
                    let status = if i.output.is_some() || resolved.is_some() {
                        "completed"
                    } else if i.failed.is_some() {
                        "failed"
                    } else if i.pending.is_some() {
                        "awaiting check"
                    } else if i.retry.is_some() {
                        "retry scheduled"
                    } else {
                        "interrupted"
                    };
                    (status, i.attempts)
                }
                (None, _) => ("skipped", 0),
            };
            StepView { step: key.to_string(), status, attempts }
        })
        .collect();
    let next = match status {
        RunIndexStatus::Waiting => waiting_on.first().map(|p| {
            format!("tether approve {run} {} --as NAME (or tether reject {run} {} --as NAME)", p.approval, p.approval)
        }),
        RunIndexStatus::Paused => {
            let metric = paused.as_ref().map_or("METRIC", |p| p.exceeded.as_str());
            Some(format!("tether resume {run} --budget {metric}=+N"))
        }
        RunIndexStatus::Running => Some(format!("tether resume {run}")),
        _ => None,
    };
    View {
        run_id: run.to_string(),
        workflow,
        identity: state.identity.clone(),
        status: status.as_str(),
        started: rfc3339(started_us),
        finished: over.then(|| rfc3339(events.last().map_or(0, |e| e.at_us))),
        input: state.input.clone(),
        output,
        error,
        waiting_on,
        paused,
        steps,
        totals: Totals {
            fuel: state.used.fuel,
            wall_ms: state.used.wall_us as f64 / 1e3,
            tool_calls: state.used.tool_calls,
            usage: state.used.usage.clone(),
        },
        next,
    }
}

fn print_text(v: &View) {
    let short = |value: &Value| {
        let text = value.to_string();
        let cut: String = text.chars().take(120).collect();
        sanitize(&if cut.len() < text.len() { format!("{cut}…") } else { cut })
    };
    println!("run {}  workflow {}  as {}", v.run_id, sanitize(&v.workflow), sanitize(&v.identity));
    let finished = v.finished.as_deref().map(|f| format!(", finished {f}")).unwrap_or_default();
    println!("status: {}  (started {}{finished})", v.status, v.started);
    println!("input:  {}", short(&v.input));
    if let Some(output) = &v.output {
        println!("output: {}", short(output));
    }
    if let Some(error) = &v.error {
        let field = |k: &str| error.get(k).and_then(Value::as_str).unwrap_or("-").to_string();
        println!("error:  step {}: {}: {}", field("step"), field("class"), sanitize(&field("message")));
    }
    for p in &v.waiting_on {
        let by = if p.approved_by.is_empty() { "nobody yet".to_string() } else { p.approved_by.join(", ") };
        let deadline =
            p.deadline.as_deref().map(|d| format!("; deadline {d}, then {}", p.on_timeout)).unwrap_or_default();
        println!(
            "waiting on {}: gate {} at step {}, {} of {} approvals (approved by {by}){deadline}",
            p.approval,
            p.gate,
            p.step,
            p.approved_by.len(),
            p.needed
        );
        println!("  proposes {}", short(&p.proposal));
    }
    if let Some(p) = &v.paused {
        println!("paused at step {}: the run's `{}` budget is used up", p.step, p.exceeded);
    }
    let steps: Vec<String> = v
        .steps
        .iter()
        .map(|s| match s.attempts {
            0 | 1 => format!("{} {}", s.step, s.status),
            n => format!("{} {} ({n} attempts)", s.step, s.status),
        })
        .collect();
    println!("steps:  {}", if steps.is_empty() { "none started".to_string() } else { steps.join(", ") });
    let usage: Vec<String> = v.totals.usage.iter().map(|(m, a)| format!("{m} {a}")).collect();
    println!(
        "totals: fuel {}, time {}, {} tool calls{}",
        fuel(v.totals.fuel),
        micros((v.totals.wall_ms * 1e3) as u64),
        v.totals.tool_calls,
        if usage.is_empty() { String::new() } else { format!(", {}", usage.join(", ")) }
    );
    if let Some(next) = &v.next {
        println!("next:   {next}");
    }
}
