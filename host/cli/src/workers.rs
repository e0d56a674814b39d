//! `tether workers`: the hosts executing runs now, from the journal's leases.

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
            println!("no host holds a run now");
        }
        for w in &workers {
            let state = if w.lapsed { "  (every lease lapsed: its runs go to the next host that looks)" } else { "" };
            println!("{}  {} run(s){state}", w.owner, w.runs.len());
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
