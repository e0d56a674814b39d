//! `tether copy`: a journal copied into another, then every run verified there.

use std::process::ExitCode;
use std::time::Instant;

use crate::cli::{CopyArgs, DbArgs};
use crate::failure::Failure;

pub(crate) fn copy(args: CopyArgs) -> Result<ExitCode, Failure> {
    crate::setup::async_runtime()?.block_on(async {
        let from = args.db.open_existing().await?;
        let to_args = DbArgs { db: Some(args.to.clone()), sync: args.db.sync.clone(), pool: None };
        let to = to_args.open().await?;
        let (from_name, to_name) = (describe(&args.db), tether_store::describe_url(&args.to));
        if from_name == to_name {
            return Err(Failure::usage(format!("--to names the journal being copied ({to_name}); name another")));
        }
        let started = Instant::now();
        let mut last_said = Instant::now();
        let copied = tether_app::copy::copy(from.as_ref(), to.as_ref(), |index, total, _run| {
            if !args.json && (index == 0 || last_said.elapsed().as_secs() >= 2) {
                eprintln!("copying run {} of {total}", index + 1);
                last_said = Instant::now();
            }
        })
        .await?;
        let copy_s = started.elapsed().as_secs_f64();
        // Every run checked where it now lives: its chain, its head, its index row.
        let checked =
            tether_app::App::new(to, tether_runtime::RuntimeConfig::default(), tether_runtime::LeaseConfig::default())
                .verify_all()
                .await?;
        let broken: Vec<_> = checked.iter().filter(|c| !c.problems.is_empty()).collect();
        let whole = broken.is_empty() && copied.refused.is_empty();
        if args.json {
            let report = serde_json::json!({
                "from": from_name,
                "to": to_name,
                "copied": copied,
                "verified": checked.len(),
                "broken": broken,
                "seconds": copy_s,
            });
            println!("{}", crate::output::json(&report));
        } else {
            for c in &broken {
                crate::verify::print(c);
            }
            for r in &copied.refused {
                eprintln!("error: not copied: {}", crate::output::sanitize(&r.why));
            }
            eprintln!(
                "copied {} run(s) ({} events), {} component(s), {} plugin(s), {} token(s) from {from_name} to \
                 {to_name} in {copy_s:.1}s; {} already there, {} not copied; {} run(s) verified in {to_name}{}",
                copied.runs,
                copied.events,
                copied.components,
                copied.plugins,
                copied.tokens,
                copied.present,
                copied.refused.len(),
                checked.len(),
                if broken.is_empty() {
                    ", every one intact".to_string()
                } else {
                    format!(", {} NOT intact", broken.len())
                }
            );
        }
        Ok(if whole { ExitCode::SUCCESS } else { ExitCode::from(1) })
    })
}

fn describe(db: &DbArgs) -> String {
    tether_store::describe_url(&db.db.clone().unwrap_or_else(tether_store::default_database_url))
}
