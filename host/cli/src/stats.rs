//! `tether stats`: figures over recorded runs, computed from their journals alone.

use std::process::ExitCode;

use tether_app::{Stats, StatsFilter};

use crate::cli::StatsArgs;
use crate::Failure;

pub(crate) fn stats(args: StatsArgs) -> Result<ExitCode, Failure> {
    let since_us = args.since.as_deref().map(parse_since).transpose()?;
    crate::setup::async_runtime()?.block_on(async {
        let filter = StatsFilter { workflow: args.workflow.clone(), since_us, limit: args.limit };
        let stats = args.db.reader().await?.stats(&filter).await?;
        if args.json {
            println!("{}", crate::output::json(&stats));
        } else {
            print(&stats);
        }
        Ok(ExitCode::SUCCESS)
    })
}

pub(crate) fn print(s: &Stats) {
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
pub(crate) fn parse_since(text: &str) -> Result<u64, Failure> {
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
