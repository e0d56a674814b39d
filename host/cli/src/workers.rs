//! `tether workers`: the hosts on the journal (their heartbeats) and the runs each holds.

use std::process::ExitCode;

use crate::cli::WorkersArgs;
use crate::failure::Failure;

pub(crate) fn workers(args: WorkersArgs) -> Result<ExitCode, Failure> {
    crate::setup::async_runtime()?.block_on(async {
        let workers = args.db.reader().await?.workers().await?;
        if args.json {
            println!("{}", crate::output::json(&serde_json::to_value(&workers).unwrap_or_default()));
            return Ok(ExitCode::SUCCESS);
        }
        if workers.is_empty() {
            println!("no host is on this journal now");
        }
        for w in &workers {
            let beat = match w.beat_ms_ago {
                Some(ago) => format!("last heartbeat {:.1}s ago", ago as f64 / 1e3),
                None => "no heartbeat".into(),
            };
            let state = if w.lapsed { "  LAPSED: its runs go to the next worker that looks" } else { "" };
            println!("{}  {beat}  {} run(s){state}", crate::output::sanitize(&w.owner), w.runs.len());
            for r in &w.runs {
                let when = if r.lapses_in_ms > 0 {
                    format!("lapses in {:.1}s", r.lapses_in_ms as f64 / 1e3)
                } else {
                    format!("lapsed {:.1}s ago", -r.lapses_in_ms as f64 / 1e3)
                };
                println!("  {}  epoch {}  {when}", r.run_id, r.epoch);
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
