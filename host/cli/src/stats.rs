//! `tether stats`: figures over recorded runs, computed from their journals alone.

use std::collections::BTreeMap;
use std::process::ExitCode;

use serde::Serialize;

use tether_types::autonomy::{outcomes, OutcomeKind};
use tether_types::policy::RESERVED_IDENTITIES;
use tether_types::{Event, EventKind};

use crate::cli::StatsArgs;
use crate::failure::store_failure;
use crate::Failure;

/// Everything `stats` reports.
#[derive(Debug, Default, Serialize)]
struct Stats {
    runs: u32,
    /// Runs that ended by themselves: completed, failed, compensated or compensation failed.
    finished: u32,
    /// Runs a person cancelled (not counted as finished: neither a success nor a failure).
    cancelled: u32,
    completed: u32,
    /// completed / finished.
    success_rate: Option<f64>,
    /// Runs that needed a human (a request not approved by the gate itself) / runs.
    escalation_rate: Option<f64>,
    /// Runs whose completed steps were undone / finished.
    rollback_rate: Option<f64>,
    /// Runs waiting for a human now.
    waiting: u32,
    steps: BTreeMap<String, StepLatency>,
    /// Mean fuel (steps and tools) per completed run.
    fuel_per_success: Option<f64>,
    /// Mean reported usage per completed run, per metric.
    usage_per_success: BTreeMap<String, f64>,
    gates: BTreeMap<String, GateStats>,
}

#[derive(Debug, Default, Serialize)]
struct StepLatency {
    /// Completed attempts measured.
    count: usize,
    median_us: u64,
    p95_us: u64,
}

#[derive(Debug, Default, Serialize)]
struct GateStats {
    /// Human decisions.
    decisions: u32,
    approved: u32,
    /// Approved with an edit, or rejected.
    overrides: u32,
    override_rate: Option<f64>,
    auto_approved: u32,
    /// Automatic approvals a reviewer overrode (each re-armed the gate).
    auto_overridden: u32,
    timed_out: u32,
}

pub(crate) fn stats(args: StatsArgs) -> Result<ExitCode, Failure> {
    let since_us = args.since.as_deref().map(parse_since).transpose()?;
    crate::setup::async_runtime()?.block_on(async {
        let store = args.db.open_existing().await?;
        let index = tether_types::store::JournalStore::runs(&store, None, args.limit).await.map_err(store_failure)?;
        let mut runs = Vec::new();
        for r in index {
            if args.workflow.as_ref().is_some_and(|w| *w != r.workflow) || since_us.is_some_and(|s| r.started_us < s) {
                continue;
            }
            let rows = tether_types::store::JournalStore::events(&store, &r.run_id).await.map_err(store_failure)?;
            let events = tether_types::chain::verify_and_decode(&r.run_id, &rows)
                .map_err(|e| Failure::Internal(e.to_string()))?;
            runs.push((r.run_id, events));
        }
        let stats = compute(&runs);
        if args.json {
            println!("{}", crate::output::json(&stats));
        } else {
            print(&stats);
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn compute(runs: &[(String, Vec<Event>)]) -> Stats {
    let mut s = Stats { runs: runs.len() as u32, ..Stats::default() };
    let (mut compensated, mut escalated, mut fuel_total) = (0u32, 0u32, 0u64);
    let mut usage: BTreeMap<String, f64> = BTreeMap::new();
    let mut latencies: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (_, events) in runs {
        let mut status = "running";
        let mut fuel = 0u64;
        let mut human = false;
        for e in events {
            match &e.kind {
                EventKind::StepCompleted { step, fuel: f, tool_fuel, wall_us, .. } => {
                    fuel += f + tool_fuel;
                    latencies.entry(tether_types::flow::step_of(step).to_string()).or_default().push(*wall_us);
                }
                EventKind::StepFailed { fuel: f, tool_fuel, .. } => fuel += f + tool_fuel,
                EventKind::ApprovalDecided { by, .. } if !RESERVED_IDENTITIES.contains(&by.as_str()) => human = true,
                EventKind::RunWaiting { .. } => human = true,
                EventKind::RunCompleted { .. } => status = "completed",
                EventKind::RunFailed { .. } => status = "failed",
                EventKind::RunCompensated { .. } | EventKind::RunCompensationFailed { .. } => status = "compensated",
                _ => {}
            }
        }
        // A cancelled run ends as failed or compensated; it is neither.
        if matches!(status, "failed" | "compensated")
            && events.iter().any(|e| matches!(e.kind, EventKind::RunCancelled { .. }))
        {
            status = "cancelled";
        }
        let waiting = events.iter().rev().find_map(|e| match e.kind {
            EventKind::RunWaiting { .. } => Some(true),
            EventKind::RunResumed { .. } => Some(false),
            _ => None,
        });
        if status == "running" && waiting == Some(true) {
            s.waiting += 1;
        }
        escalated += u32::from(human);
        match status {
            "completed" => {
                s.completed += 1;
                s.finished += 1;
                fuel_total += fuel;
                for (m, a) in tether_types::state::usage_totals(events) {
                    *usage.entry(m).or_default() += a;
                }
            }
            "failed" => s.finished += 1,
            "compensated" => {
                s.finished += 1;
                compensated += 1;
            }
            "cancelled" => s.cancelled += 1,
            _ => {}
        }
    }
    let ratio = |a: u32, b: u32| (b > 0).then(|| f64::from(a) / f64::from(b));
    s.success_rate = ratio(s.completed, s.finished);
    s.rollback_rate = ratio(compensated, s.finished);
    s.escalation_rate = ratio(escalated, s.runs);
    if s.completed > 0 {
        s.fuel_per_success = Some(fuel_total as f64 / f64::from(s.completed));
        s.usage_per_success = usage.into_iter().map(|(m, a)| (m, a / f64::from(s.completed))).collect();
    }
    for (step, mut values) in latencies {
        values.sort_unstable();
        let rank = |p: f64| values[((p * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1];
        s.steps.insert(step, StepLatency { count: values.len(), median_us: rank(0.5), p95_us: rank(0.95) });
    }
    for o in outcomes(runs.iter().map(|(r, e)| (r.as_str(), e.as_slice()))) {
        let g = s.gates.entry(o.gate.clone()).or_default();
        match o.kind {
            OutcomeKind::Approved => g.approved += 1,
            OutcomeKind::Edited | OutcomeKind::Rejected => g.overrides += 1,
            OutcomeKind::AutoApproved => g.auto_approved += 1,
            OutcomeKind::AutoOverridden => g.auto_overridden += 1,
            OutcomeKind::TimedOut => g.timed_out += 1,
        }
        if o.kind.is_human() {
            g.decisions += 1;
        }
    }
    for g in s.gates.values_mut() {
        g.override_rate = ratio(g.overrides, g.decisions);
    }
    s
}

fn print(s: &Stats) {
    let pct = |r: Option<f64>| r.map_or("-".to_string(), |r| format!("{:.1}%", r * 100.0));
    println!(
        "runs: {} ({} finished, {} waiting for a human, {} cancelled)",
        s.runs, s.finished, s.waiting, s.cancelled
    );
    println!("success rate:    {}", pct(s.success_rate));
    println!("escalation rate: {}  (runs that needed a human)", pct(s.escalation_rate));
    println!("rollback rate:   {}  (runs whose steps were compensated)", pct(s.rollback_rate));
    if let Some(f) = s.fuel_per_success {
        println!("fuel per successful run: {}", crate::output::fuel(f as u64));
    }
    for (m, a) in &s.usage_per_success {
        println!("{m} per successful run: {a:.2}");
    }
    if !s.steps.is_empty() {
        println!("\n{:<24} {:>7} {:>10} {:>10}", "STEP", "COUNT", "MEDIAN", "P95");
        for (name, l) in &s.steps {
            let (m, p) = (crate::output::micros(l.median_us), crate::output::micros(l.p95_us));
            println!("{name:<24} {:>7} {m:>10} {p:>10}", l.count);
        }
    }
    if !s.gates.is_empty() {
        println!(
            "\n{:<20} {:>9} {:>9} {:>9} {:>9} {:>6} {:>8}",
            "GATE", "DECIDED", "APPROVED", "OVERRIDES", "RATE", "AUTO", "TIMEOUT"
        );
        for (name, g) in &s.gates {
            println!(
                "{name:<20} {:>9} {:>9} {:>9} {:>9} {:>6} {:>8}",
                g.decisions,
                g.approved,
                g.overrides,
                pct(g.override_rate),
                g.auto_approved,
                g.timed_out
            );
        }
    }
}

/// `24h`, `7days` (that long ago), or a UTC date or time.
fn parse_since(text: &str) -> Result<u64, Failure> {
    let now = std::time::SystemTime::now();
    let at = match humantime::parse_duration(text) {
        Ok(d) => now.checked_sub(d).unwrap_or(std::time::UNIX_EPOCH),
        Err(_) => {
            let full = if text.len() == 10 { format!("{text}T00:00:00Z") } else { text.to_string() };
            humantime::parse_rfc3339_weak(full.trim_end_matches('Z')).map_err(|_| {
                Failure::usage(format!(
                    "--since `{text}`: give a period such as 24h or 7days, or a UTC date such as 2026-11-01"
                ))
            })?
        }
    };
    Ok(at.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64))
}
