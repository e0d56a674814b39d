//! `tether show RUN`: one run at a glance (the application's view of it), and the
//! command that continues it.

use std::process::ExitCode;

use serde_json::Value;
use tether_app::{NextStep, RunView};

use crate::cli::ShowArgs;
use crate::output::{fuel, json, micros, sanitize};
use crate::Failure;

pub(crate) fn show(args: ShowArgs) -> Result<ExitCode, Failure> {
    crate::setup::async_runtime()?.block_on(async {
        let app = args.db.reader().await?;
        let run = app.resolve_run(&args.run).await?;
        let view = app.show(&run).await?;
        print_view(&view, args.json)?;
        Ok(ExitCode::SUCCESS)
    })
}

/// Prints a run's view as `tether show` does, with the command that continues it.
pub(crate) fn print_view(view: &RunView, json_out: bool) -> Result<(), Failure> {
    let next = view.next.as_ref().map(|n| next_command(&view.run_id, n));
    if json_out {
        let mut doc = serde_json::to_value(view).map_err(|e| Failure::Internal(e.to_string()))?;
        if let Some(next) = &next {
            doc["next"] = next.clone().into();
        }
        println!("{}", json(&doc));
    } else {
        print_text(view, next.as_deref());
    }
    Ok(())
}

/// The command that continues the run.
fn next_command(run: &str, next: &NextStep) -> String {
    match next {
        NextStep::Decide { request } => {
            format!("tether approve {run} {request} --as NAME (or tether reject {run} {request} --as NAME)")
        }
        NextStep::RaiseBudget { metric } => {
            format!("tether resume {run} --budget {}=+N", metric.as_deref().unwrap_or("METRIC"))
        }
        NextStep::Resume => format!("tether resume {run}"),
    }
}

fn print_text(v: &RunView, next: Option<&str>) {
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
    if let Some(next) = next {
        println!("next:   {next}");
    }
}
