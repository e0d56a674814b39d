//! Commands over the journal: `runs`, `history`, `verify`, `replay`.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;

use tether_app::AppError;
use tether_types::event::{Event, EventKind, HostRead, ToolResult};
use tether_types::exchange::HttpOutcome;
use tether_types::model::ModelOutcome;
use tether_types::store::RunIndexStatus;
use tether_types::RunId;

use crate::cli::{BackupArgs, HistoryArgs, ReplayArgs, RunsArgs, VerifyArgs};
use crate::failure::Failure;
use crate::output::{fuel, micros, sanitize, utc};

/// Store errors that mean bad input (wrong file, unknown run) are usage errors.
pub(crate) fn runs(args: RunsArgs) -> Result<ExitCode, Failure> {
    let status = match args.status.as_deref() {
        None => None,
        Some(s) => Some(
            RunIndexStatus::parse(s)
                .ok_or_else(|| Failure::usage(format!("--status must be running, paused, waiting, completed, failed, compensated, compensation_failed or cancelled, not `{s}`")))?,
        ),
    };
    crate::setup::async_runtime()?.block_on(async {
        let runs = args.db.reader().await?.runs(status, args.limit).await?;
        print_runs(&runs, args.json);
        Ok(ExitCode::SUCCESS)
    })
}

/// Prints runs as `tether runs` does (JSON: the stored fields, plus times in RFC 3339
/// and the duration in milliseconds).
pub(crate) fn print_runs(runs: &[tether_types::store::RunSummary], json: bool) {
    if json {
        let list: Vec<serde_json::Value> = runs
            .iter()
            .map(|r| {
                let mut v = serde_json::to_value(r).expect("run summaries serialize");
                v["started"] = crate::output::rfc3339(r.started_us).into();
                if let Some(f) = r.finished_us {
                    v["finished"] = crate::output::rfc3339(f).into();
                    v["duration_ms"] = (f.saturating_sub(r.started_us) as f64 / 1e3).into();
                }
                v
            })
            .collect();
        println!("{}", crate::output::json(&list));
        return;
    }
    if runs.is_empty() {
        eprintln!("no runs");
    }
    let width = crate::output::terminal_width();
    let header =
        format!("{:<37} {:<20} {:<10} {:<20} {:>10}", "RUN", "WORKFLOW", "STATUS", "STARTED (UTC)", "DURATION");
    println!("{}", crate::output::fit(header, width));
    for r in runs {
        let duration = r.finished_us.map(|f| micros(f.saturating_sub(r.started_us))).unwrap_or_else(|| "-".into());
        let line = format!(
            "{:<37} {:<20} {:<10} {:<20} {:>10}",
            r.run_id,
            sanitize(&r.workflow),
            r.status.as_str(),
            utc(r.started_us),
            duration
        );
        println!("{}", crate::output::fit(line, width));
    }
}

pub(crate) fn history(args: HistoryArgs) -> Result<ExitCode, Failure> {
    crate::setup::async_runtime()?.block_on(async {
        let app = args.db.reader().await?;
        let run = app.resolve_run(&args.run).await?;
        let events = app.events(&run).await?;
        print_history(&events, args.json);
        Ok(ExitCode::SUCCESS)
    })
}

/// Prints a run's events as `tether history` does (JSON: as journaled, each with its time
/// in RFC 3339 beside `at_us`).
pub(crate) fn print_history(events: &[Event], json: bool) {
    if json {
        let list: Vec<serde_json::Value> = events
            .iter()
            .map(|e| {
                let mut v = serde_json::to_value(e).expect("events serialize");
                v["at"] = crate::output::rfc3339(e.at_us).into();
                v
            })
            .collect();
        println!("{}", crate::output::json(&list));
        return;
    }
    let t0 = events.first().map_or(0, |e| e.at_us);
    let run_identity = match events.first().map(|e| &e.kind) {
        Some(EventKind::RunStarted { identity, .. }) => identity.clone(),
        _ => "-".into(),
    };
    // On a terminal each event is one line, its detail cut to the width.
    let width = crate::output::terminal_width();
    let header = format!("{:>5}  {:>10}  {:<12} {:<16} {:<20} DETAIL", "SEQ", "TIME", "IDENTITY", "STEP", "EVENT");
    println!("{}", crate::output::fit(header, width));
    for e in events {
        let at = micros(e.at_us.saturating_sub(t0));
        let step = e.kind.step().unwrap_or("-");
        // Who acted: the approver for a decision, the host for its own events, the
        // run's identity for everything done on its behalf.
        let who = match &e.kind {
            EventKind::ApprovalDecided { by, .. }
            | EventKind::ApprovalOverridden { by, .. }
            | EventKind::RunCancelled { by, .. } => by.as_str(),
            EventKind::RunResumed { .. } | EventKind::RunWaiting { .. } | EventKind::RunPaused { .. } => {
                tether_types::policy::BY_HOST
            }
            _ => run_identity.as_str(),
        };
        let line = format!(
            "{:>5}  {:>10}  {:<12} {:<16} {:<20} {}",
            e.seq,
            at,
            sanitize(who),
            sanitize(step),
            e.kind.name(),
            sanitize(&detail(e))
        );
        println!("{}", crate::output::fit(line, width));
    }
}

fn detail(e: &Event) -> String {
    let short = |v: &serde_json::Value| {
        let s = v.to_string();
        if s.chars().count() > 80 {
            format!("{}…", s.chars().take(80).collect::<String>())
        } else {
            s
        }
    };
    match &e.kind {
        EventKind::RunStarted { workflow, identity, workflow_digest, .. } => {
            format!("workflow {workflow} ({}), as {identity}", &workflow_digest[..12])
        }
        EventKind::RunResumed { pid } => format!("resumed by process {pid}"),
        EventKind::StepAttemptStarted { attempt, component_digest, input, .. } => {
            format!("attempt {attempt}, component {}, input {}", &component_digest[..12], short(input))
        }
        EventKind::ToolCallRequested { tool, call, input, idempotency_key, .. } => {
            format!("call {call}: {tool} {} (key {idempotency_key})", short(input))
        }
        EventKind::ToolCallCompleted { tool, call, result, fuel: f, wall_us, .. } => {
            let verdict = match result {
                ToolResult::Ok(v) => format!("ok {}", short(v)),
                ToolResult::Err { class, kind, message } => {
                    format!("{} ({kind:?}): {message}", class.map_or("error".to_string(), |c| c.to_string()))
                }
            };
            format!("call {call}: {tool} -> {verdict}; fuel {}, {}", fuel(*f), micros(*wall_us))
        }
        EventKind::HttpExchanged { at, request, outcome, wall_us, .. } => {
            let answer = match outcome {
                HttpOutcome::Answer { status, body, .. } => format!("{status}, {} bytes", body.bytes),
                HttpOutcome::Failed { error, message } => format!("{}: {message}", error.as_str()),
            };
            let key = request.headers.iter().find(|(n, _)| n == "idempotency-key");
            let key = key.map(|(_, k)| format!(" (key {k})")).unwrap_or_default();
            let credential = request.credential.as_deref().map(|c| format!(" with {c}")).unwrap_or_default();
            format!("{at}: {} {}{key}{credential} -> {answer}; {}", request.method, request.url, micros(*wall_us))
        }
        EventKind::ModelCalled { call, request, outcome, usage, wall_us, .. } => {
            let model = request["model"].as_str().unwrap_or("?");
            let answer = match outcome {
                ModelOutcome::Answer { answer } => {
                    let message = &answer["choices"][0]["message"];
                    let calls: Vec<&str> = message["tool_calls"]
                        .as_array()
                        .map(|c| c.iter().filter_map(|c| c["function"]["name"].as_str()).collect())
                        .unwrap_or_default();
                    if calls.is_empty() {
                        format!("answered {}", short(&message["content"]))
                    } else {
                        format!("asks for {}", calls.join(", "))
                    }
                }
                ModelOutcome::Failed { error, message } => format!("{}: {message}", error.as_str()),
            };
            let tokens = usage.get("tokens").map(|t| format!("; {t} tokens")).unwrap_or_default();
            let cost = usage.get("cost_usd").map(|c| format!(", ${c:.6}")).unwrap_or_default();
            format!("call {call}: {model} {answer}{tokens}{cost}; {}", micros(*wall_us))
        }
        EventKind::HttpSending { at, method, url, .. } => {
            format!("{at}: {method} {url} leaving without an idempotency key")
        }
        EventKind::HostRead { read, .. } => match read {
            HostRead::WallClock { nanos } => format!("wall clock {nanos} ns"),
            HostRead::MonotonicClock { nanos } => format!("monotonic clock {nanos} ns"),
            HostRead::Random { hex } => format!("{} random bytes", hex.len() / 2),
        },
        EventKind::UsageReported { metric, amount, .. } => format!("{metric} += {amount}"),
        EventKind::GuestLog { level, stream, tool, message, .. } => {
            let from = tool.as_deref().map(|t| format!("tool {t} ")).unwrap_or_default();
            format!("{} {from}{stream}: {message}", level.as_str())
        }
        EventKind::StepCompleted { output, fuel: f, tool_fuel, wall_us, peak_memory, .. } => format!(
            "fuel {} (+{} tools), {}, peak memory {} KiB, output {}",
            fuel(*f),
            fuel(*tool_fuel),
            micros(*wall_us),
            peak_memory / 1024,
            short(output)
        ),
        EventKind::StepFailed { failure, fuel: f, wall_us, .. } => {
            format!("{}: {}; fuel {}, {}", failure.class, failure.message, fuel(*f), micros(*wall_us))
        }
        EventKind::RetryScheduled { attempt, backoff_ms, not_before_us, .. } => {
            format!("attempt {attempt} after {backoff_ms} ms (not before {} UTC)", utc(*not_before_us))
        }
        EventKind::RunPaused { exceeded, used, limit, .. } => {
            format!("paused: the run's `{exceeded}` budget is used up ({used} of {limit})")
        }
        EventKind::BudgetRaised { metric, by, requested_by } => match requested_by {
            Some(who) => format!("`{metric}` budget raised by {by} (asked by {who})"),
            None => format!("`{metric}` budget raised by {by}"),
        },
        EventKind::CompensationBegun { error } if error.class == tether_types::FailureClass::Cancelled => {
            "cancelled; undoing completed steps in reverse order".to_string()
        }
        EventKind::CompensationBegun { error } => {
            format!("step {} failed ({}); undoing completed steps in reverse order", error.step, error.class)
        }
        EventKind::StepCompensated { via, result, fuel: f, wall_us, .. } => {
            let verdict = match result {
                ToolResult::Ok(v) => format!("ok {}", short(v)),
                ToolResult::Err { class, message, .. } => {
                    format!("FAILED {}: {message}", class.map_or("error".to_string(), |c| c.to_string()))
                }
            };
            format!("by {via} -> {verdict}; fuel {}, {}", fuel(*f), micros(*wall_us))
        }
        EventKind::RunCompensated { error } if error.class == tether_types::FailureClass::Cancelled => {
            "cancelled; completed steps undone".to_string()
        }
        EventKind::RunCompensated { error } => format!("compensated after step {} failed", error.step),
        EventKind::RunCompensationFailed { failed, .. } => format!("compensation failed for: {}", failed.join(", ")),
        EventKind::StepSkipped { reason, .. } => format!("skipped: {reason}"),
        EventKind::Routed { to: Some(to), case, output, .. } => {
            format!("chose `{to}` (case {}), passing {}", case.unwrap_or_default(), short(output))
        }
        EventKind::Routed { to: None, .. } => "no case held; every target is skipped".to_string(),
        EventKind::ForEachStarted { items, .. } => format!("fanned out over {items} items"),
        EventKind::ForEachGathered { output, .. } => format!("gathered {}", short(output)),
        EventKind::LoopIterationEnded { name, iteration, until } => {
            format!("loop {name}: iteration {iteration} ended; until {}", if *until { "held" } else { "did not hold" })
        }
        EventKind::GrantsApplied { identity, env, refused } => {
            let env: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let env = if env.is_empty() { "no env".to_string() } else { format!("env {}", env.join(" ")) };
            let refused = if refused.is_empty() {
                "nothing refused".to_string()
            } else {
                format!("refused: {}", refused.join("; "))
            };
            format!("as {identity}: {env}; {refused}")
        }
        EventKind::PolicyVerdict { call, on, verdict, rule, gate, .. } => {
            let at = call.map(|c| format!("call {c} ")).unwrap_or_default();
            let rule = rule.as_deref().map_or("no rule applied (granted)".to_string(), |r| format!("rule `{r}`"));
            let gate = gate.as_deref().map(|g| format!(", gate {g}")).unwrap_or_default();
            format!("{at}{}: {} by {rule}{gate}", on.as_str(), verdict.as_str())
        }
        EventKind::ApprovalRequested { id, gate, proposal, approvals, deadline_us, class, .. } => {
            let deadline = deadline_us.map(|d| format!(", deadline {} UTC", utc(d))).unwrap_or_default();
            let class = class.as_deref().map(|c| format!(", class {c}")).unwrap_or_default();
            format!("{id}: gate {gate} needs {approvals} approval(s){deadline}{class}; proposes {}", short(proposal))
        }
        EventKind::ApprovalDecided { id, decision, payload, comment, evidence, .. } => {
            let edited = payload.as_ref().map(|p| format!(" with an edit: {}", short(p))).unwrap_or_default();
            let comment = comment.as_deref().map(|c| format!(" ({c})")).unwrap_or_default();
            let evidence = evidence
                .as_ref()
                .map(|r| format!(" on its record: {} decisions, override rate {:.3}", r.decisions, r.override_rate))
                .unwrap_or_default();
            format!("{id}: {}{edited}{comment}{evidence}", decision.as_str())
        }
        EventKind::RunWaiting { approvals } => format!("waiting for {}", approvals.join(", ")),
        EventKind::RunCancelled { reason, .. } => match reason {
            Some(r) => format!("cancelled: {r}"),
            None => "cancelled".to_string(),
        },
        EventKind::ApprovalOverridden { id, gate, payload, comment, .. } => {
            let should = payload.as_ref().map(|p| format!("; should have been {}", short(p))).unwrap_or_default();
            let comment = comment.as_deref().map(|c| format!(" ({c})")).unwrap_or_default();
            format!("{id}: the automatic approval at gate {gate} was wrong{should}{comment}; the gate re-arms")
        }
        EventKind::RunCompleted { output } => format!("output {}", short(output)),
        EventKind::RunFailed { error } => format!("step {} failed: {}: {}", error.step, error.class, error.message),
    }
}

pub(crate) fn verify(args: VerifyArgs) -> Result<ExitCode, Failure> {
    crate::setup::async_runtime()?.block_on(async {
        let app = args.db.reader().await?;
        let runs = match &args.run {
            Some(run) => {
                let id = RunId::try_from(run.clone()).map_err(|_| AppError::UnknownRun { given: run.clone() })?;
                vec![app.verify(&id).await?]
            }
            None => app.verify_all().await?,
        };
        let mut damaged = 0;
        let mut reports = Vec::new();
        for checked in runs {
            if args.run.is_some() && checked.events == 0 && checked.problems.is_empty() {
                return Err(AppError::UnknownRun { given: checked.run_id }.into());
            }
            if !checked.problems.is_empty() {
                damaged += 1;
            }
            if !args.json {
                crate::verify::print(&checked);
            }
            reports.push(checked);
        }
        if args.json {
            println!("{}", crate::output::json(&reports));
        } else if args.run.is_none() {
            eprintln!("{} run(s) checked, {damaged} with problems", reports.len());
        }
        Ok(if damaged > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
    })
}

pub(crate) fn backup(args: BackupArgs) -> Result<ExitCode, Failure> {
    crate::setup::async_runtime()?.block_on(async {
        let app = args.db.reader().await?;
        if args.file.exists() {
            return Err(Failure::usage(format!(
                "{} already exists; a backup is written to a new file",
                args.file.display()
            )));
        }
        let started = std::time::Instant::now();
        app.backup(&args.file).await?;
        let size = std::fs::metadata(&args.file).map(|m| m.len()).unwrap_or(0);
        if args.json {
            let doc = serde_json::json!({
                "file": args.file.display().to_string(),
                "bytes": size,
                "ms": started.elapsed().as_secs_f64() * 1e3,
            });
            println!("{}", crate::output::json(&doc));
            return Ok(ExitCode::SUCCESS);
        }
        eprintln!(
            "wrote {} ({}) in {}; open it with --db {}",
            args.file.display(),
            crate::output::bytes(size),
            micros(started.elapsed().as_micros() as u64),
            args.file.display()
        );
        Ok(ExitCode::SUCCESS)
    })
}

pub(crate) fn migrate(args: crate::cli::MigrateArgs) -> Result<ExitCode, Failure> {
    crate::setup::async_runtime()?.block_on(async {
        args.db.open().await?;
        let url = tether_store::describe_url(&args.db.db.clone().unwrap_or_else(tether_store::default_database_url));
        if args.json {
            println!("{}", crate::output::json(&serde_json::json!({"journal": url, "ready": true})));
        } else {
            eprintln!("journal {url} is ready");
        }
        Ok(ExitCode::SUCCESS)
    })
}

pub(crate) fn replay(args: ReplayArgs) -> Result<ExitCode, Failure> {
    let mut overrides = HashMap::new();
    for w in &args.with {
        let (step, file) = w.split_once('=').ok_or_else(|| Failure::usage(format!("--with `{w}`: write STEP=FILE")))?;
        let wasm = crate::files::read_component(std::path::Path::new(file)).map_err(|f| match f {
            Failure::Usage(m) => Failure::usage(format!("--with {step}={file}: {m}")),
            other => other,
        })?;
        overrides.insert(step.to_string(), Arc::<[u8]>::from(wasm));
    }
    crate::setup::async_runtime()?.block_on(async {
        // Replay writes nothing, so it takes no lease.
        let app = args.host.app(tether_runtime::LeaseConfig::default(), false).await?;
        let run = app.resolve_run(&args.run).await?;
        let report = app.replay(&run, &overrides).await?;
        if args.json {
            println!("{}", crate::output::json(&report));
        } else {
            match &report.divergence {
                None => {
                    println!("replay matched {} events ({} step attempts re-executed)", report.matched, report.attempts)
                }
                Some(d) => {
                    let show = |k: &EventKind| serde_json::to_string(k).unwrap_or_default();
                    println!("replay diverged after {} matching events", report.matched);
                    match d.seq {
                        Some(seq) => println!("  at event:  {seq}"),
                        None => println!("  at event:  past the end of the recorded attempt"),
                    }
                    println!("  step:      {}", d.step);
                    println!(
                        "  expected:  {}",
                        d.expected.as_ref().map_or("nothing (the journal has no more)".into(), show)
                    );
                    println!("  actual:    {}", show(&d.actual));
                }
            }
        }
        Ok(if report.divergence.is_some() { ExitCode::from(1) } else { ExitCode::SUCCESS })
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00");
        assert_eq!(super::utc(1_795_000_000_000_000), "2026-11-18 11:06:40");
    }
}
