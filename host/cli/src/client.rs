//! Commands answered by a `tether serve` (`--server`): the same data as over a local
//! journal, fetched over the API and printed by the same code.

use std::process::ExitCode;

use serde_json::Value;
use tether_types::event::Event;
use tether_types::store::{RunIndexStatus, RunSummary};

use crate::cli::{CancelArgs, DecideArgs, HistoryArgs, InboxArgs, RunArgs, RunsArgs, ServerArgs, ShowArgs, StatsArgs};
use crate::remote::Remote;
use crate::Failure;
use tether_server::path_segment as segment;

/// The server to ask, if the command names one (`--server` or `TETHER_SERVER`).
fn server(args: &ServerArgs) -> Result<Option<Remote>, Failure> {
    Remote::from(args.server.as_deref())
}

/// `tether runs` over a server; `None` without one.
pub(crate) fn try_runs(args: &RunsArgs) -> Option<Result<ExitCode, Failure>> {
    let remote = server(&args.server).transpose()?;
    Some(remote.and_then(|r| {
        let status = match args.status.as_deref() {
            None => None,
            Some(s) => Some(
                RunIndexStatus::parse(s)
                    .ok_or_else(|| Failure::usage(format!("--status `{s}` is not a run status")))?,
            ),
        };
        runs(&r, status, args.limit, args.json)
    }))
}

/// `tether show` over a server; `None` without one.
pub(crate) fn try_show(args: &ShowArgs) -> Option<Result<ExitCode, Failure>> {
    let remote = server(&args.server).transpose()?;
    Some(remote.and_then(|r| show(&r, &args.run, args.json)))
}

/// `tether history` over a server; `None` without one.
pub(crate) fn try_history(args: &HistoryArgs) -> Option<Result<ExitCode, Failure>> {
    let remote = server(&args.server).transpose()?;
    Some(remote.and_then(|r| history(&r, &args.run, args.json)))
}

/// `tether inbox` over a server; `None` without one.
pub(crate) fn try_inbox(args: &InboxArgs) -> Option<Result<ExitCode, Failure>> {
    let remote = server(&args.server).transpose()?;
    Some(remote.and_then(|r| inbox(&r, args.json)))
}

/// `tether stats` over a server; `None` without one.
pub(crate) fn try_stats(args: &StatsArgs) -> Option<Result<ExitCode, Failure>> {
    let remote = server(&args.server).transpose()?;
    Some(remote.and_then(|r| {
        let since_us = args.since.as_deref().map(crate::stats::parse_since).transpose()?;
        stats(&r, args.workflow.as_deref(), since_us, args.limit, args.json)
    }))
}

/// `tether approve` / `reject` over a server; `None` without one.
pub(crate) fn try_decide(args: &DecideArgs, approve: bool, payload: Option<&str>) -> Option<Result<ExitCode, Failure>> {
    let remote = server(&args.server).transpose()?;
    Some(remote.and_then(|r| {
        if args.identity.is_some() {
            return Err(Failure::usage("with --server the decision is made as your token's identity; leave out --as"));
        }
        let payload = payload.map(|p| crate::govern::read_json(p, "--payload")).transpose()?;
        let word = if approve { "approve" } else { "reject" };
        decide(&r, &args.run, &args.gate, word, payload, args.comment.as_deref())
    }))
}

/// `tether cancel` over a server; `None` without one.
pub(crate) fn try_cancel(args: &CancelArgs) -> Option<Result<ExitCode, Failure>> {
    let remote = server(&args.server).transpose()?;
    Some(remote.and_then(|r| {
        if args.identity.is_some() {
            return Err(Failure::usage("with --server the cancel is made as your token's identity; leave out --as"));
        }
        cancel(&r, &args.run, args.reason.as_deref())
    }))
}

/// `tether run` over a server (the workflow by its registered name); `None` without one.
pub(crate) fn try_run(args: &RunArgs) -> Option<Result<ExitCode, Failure>> {
    let remote = server(&args.server).transpose()?;
    Some(remote.and_then(|r| {
        if args.identity.is_some() || args.policy.is_some() || args.run_id.is_some() {
            return Err(Failure::usage(
                "with --server the run is started as a registered workflow: leave out --as, --policy and --run-id",
            ));
        }
        let input = crate::run::read_input(&args.input)?;
        run(&r, &args.workflow.display().to_string(), input, &args.output)
    }))
}

fn block_on<T>(work: impl std::future::Future<Output = Result<T, Failure>>) -> Result<T, Failure> {
    crate::setup::async_runtime()?.block_on(work)
}

fn decode<T: serde::de::DeserializeOwned>(v: Value, what: &str) -> Result<T, Failure> {
    serde_json::from_value(v).map_err(|e| Failure::Internal(format!("the server's {what} cannot be read: {e}")))
}

pub(crate) fn runs(
    remote: &Remote,
    status: Option<RunIndexStatus>,
    limit: u32,
    json: bool,
) -> Result<ExitCode, Failure> {
    if limit > tether_server::PAGE_MAX {
        return Err(Failure::usage(format!("with --server, --limit is at most {}", tether_server::PAGE_MAX)));
    }
    block_on(async {
        let mut path = format!("/v1/runs?limit={limit}");
        if let Some(s) = status {
            path.push_str(&format!("&status={}", s.as_str()));
        }
        let doc = remote.get(&path).await?;
        let runs: Vec<RunSummary> = decode(doc["runs"].clone(), "runs")?;
        crate::journal::print_runs(&runs, json);
        Ok(ExitCode::SUCCESS)
    })
}

pub(crate) fn show(remote: &Remote, run: &str, json: bool) -> Result<ExitCode, Failure> {
    block_on(async {
        let doc = remote.get(&format!("/v1/runs/{}", segment(run))).await?;
        let mut view: tether_app::RunView = decode(doc, "run")?;
        view.next = view.next_step();
        crate::show::print_view(&view, json)?;
        Ok(ExitCode::SUCCESS)
    })
}

pub(crate) fn history(remote: &Remote, run: &str, json: bool) -> Result<ExitCode, Failure> {
    block_on(async {
        let mut events: Vec<Event> = Vec::new();
        let mut after = 0;
        loop {
            let path = format!("/v1/runs/{}/events?after={after}&limit={}", segment(run), tether_server::PAGE_MAX);
            let page = remote.get(&path).await?;
            events.extend(decode::<Vec<Event>>(page["events"].clone(), "events")?);
            match page["next_after"].as_u64() {
                Some(next) => after = next,
                None => break,
            }
        }
        crate::journal::print_history(&events, json);
        Ok(ExitCode::SUCCESS)
    })
}

pub(crate) fn inbox(remote: &Remote, json: bool) -> Result<ExitCode, Failure> {
    block_on(async {
        let doc = remote.get("/v1/approvals?state=pending").await?;
        let mut list: Vec<Value> = decode(doc["approvals"].clone(), "approvals")?;
        // What the API adds for its clients; the CLI shows what it shows locally.
        for p in &mut list {
            if let Some(o) = p.as_object_mut() {
                o.remove("id");
                o.remove("decide");
            }
        }
        crate::govern::print_inbox(&list, json);
        Ok(ExitCode::SUCCESS)
    })
}

pub(crate) fn stats(
    remote: &Remote,
    workflow: Option<&str>,
    since_us: Option<u64>,
    limit: u32,
    json: bool,
) -> Result<ExitCode, Failure> {
    block_on(async {
        let mut path = format!("/v1/stats?limit={limit}");
        if let Some(w) = workflow {
            path.push_str(&format!("&workflow={}", segment(w)));
        }
        if let Some(s) = since_us {
            path.push_str(&format!("&since_us={s}"));
        }
        let stats: tether_app::Stats = decode(remote.get(&path).await?, "stats")?;
        if json {
            println!("{}", crate::output::json(&stats));
        } else {
            crate::stats::print(&stats);
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// A decision through the server, made as the token's identity.
pub(crate) fn decide(
    remote: &Remote,
    run: &str,
    gate: &str,
    decision: &str,
    payload: Option<Value>,
    comment: Option<&str>,
) -> Result<ExitCode, Failure> {
    block_on(async {
        // The request by gate or id, as the run shows it.
        let view = remote.get(&format!("/v1/runs/{}", segment(run))).await?;
        let run_id = view["run_id"].as_str().unwrap_or(run).to_string();
        let waiting = view["waiting_on"].as_array().cloned().unwrap_or_default();
        let request = waiting
            .iter()
            .find(|w| w["approval"] == gate)
            .or_else(|| {
                let at: Vec<&Value> = waiting.iter().filter(|w| w["gate"] == gate).collect();
                (at.len() == 1).then(|| at[0])
            })
            .and_then(|w| w["approval"].as_str())
            .map_or_else(|| gate.to_string(), str::to_string);
        let mut body = serde_json::json!({ "decision": decision });
        if let Some(p) = payload {
            body["payload"] = p;
        }
        if let Some(c) = comment {
            body["comment"] = c.into();
        }
        let id = segment(&format!("{run_id}:{request}"));
        let decided = remote.post(&format!("/v1/approvals/{id}/decision"), &body).await?;
        let what = match (decided["settled"].as_bool(), decision) {
            (Some(false), _) => {
                let needed = decided["approvals_needed"].as_u64().unwrap_or(1);
                let so_far = decided["approved_by"].as_array().map_or(0, Vec::len) as u64;
                format!("recorded; {} more approval(s) needed", needed.saturating_sub(so_far))
            }
            (_, "approve") => "approved".into(),
            _ => "rejected".into(),
        };
        let by = decided["by"].as_str().unwrap_or("-");
        eprintln!("run {run_id}: {request} by {by}: {what}");
        if decided["continues"].as_bool() == Some(true) {
            eprintln!("the run continues on the server; follow it with `tether show {run_id} --server URL`");
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// A cancel through the server, made as the token's identity.
pub(crate) fn cancel(remote: &Remote, run: &str, reason: Option<&str>) -> Result<ExitCode, Failure> {
    block_on(async {
        let mut body = serde_json::json!({});
        if let Some(r) = reason {
            body["reason"] = r.into();
        }
        let answer = remote.post(&format!("/v1/runs/{}/cancel", segment(run)), &body).await?;
        let run_id = answer["run_id"].as_str().unwrap_or(run);
        let by = answer["by"].as_str().unwrap_or("-");
        match answer["cancel"].as_str() {
            Some("recorded") => eprintln!("run {run_id}: cancelled by {by}; the server undoes its completed steps"),
            _ => eprintln!("run {run_id} is executing: the server was asked to cancel it (by {by})"),
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// A run of a workflow the server registered (by name): started, followed until it
/// stops (ends, waits for people, or pauses), and reported as a local run is.
pub(crate) fn run(
    remote: &Remote,
    workflow: &str,
    input: Value,
    out: &crate::cli::OutputArgs,
) -> Result<ExitCode, Failure> {
    block_on(async {
        let started = remote.post("/v1/runs", &serde_json::json!({ "workflow": workflow, "input": input })).await?;
        let run = started["run_id"].as_str().unwrap_or_default().to_string();
        if !out.json {
            eprintln!("run {run} started on the server");
        }
        let view = loop {
            let doc = remote.get(&format!("/v1/runs/{}", segment(&run))).await?;
            let view: tether_app::RunView = decode(doc, "run")?;
            if view.status != "running" {
                break view;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        };
        let mut events: Vec<Event> = Vec::new();
        let mut after = 0;
        loop {
            let path = format!("/v1/runs/{}/events?after={after}&limit={}", segment(&run), tether_server::PAGE_MAX);
            let page = remote.get(&path).await?;
            events.extend(decode::<Vec<Event>>(page["events"].clone(), "events")?);
            match page["next_after"].as_u64() {
                Some(next) => after = next,
                None => break,
            }
        }
        let id = tether_types::RunId::try_from(run).map_err(Failure::Internal)?;
        let report = tether_types::state::report_from_events(id, &events);
        Ok(crate::run::print_report_with(&report, out, view.paused.map(|p| p.exceeded)))
    })
}
