//! `tether serve`: the HTTP API, a worker, schedules and webhooks on a journal, until
//! SIGTERM or Ctrl-C. Prints the address it listens on first (with `--listen
//! 127.0.0.1:0`, the port it was given), then what it does on its own.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use tether_app::schedule::Schedule;
use tether_app::{Worker, WorkerConfig};
use tether_server::config::ServeConfig;
use tether_server::{Registry, Server, Workflows};

use crate::cli::ServeArgs;
use crate::Failure;

pub(crate) fn serve(mut args: ServeArgs) -> Result<ExitCode, Failure> {
    let config = match &args.config {
        Some(path) => ServeConfig::load(path).map_err(|e| Failure::usage(format!("--config {e}")))?,
        None => ServeConfig::default(),
    };
    let listen = args.listen.clone().or(config.listen.clone()).unwrap_or_else(|| "127.0.0.1:8080".into());
    let grace_text = args.grace.clone().or(config.grace.clone()).unwrap_or_else(|| "30s".into());
    let grace = humantime::parse_duration(&grace_text)
        .map_err(|e| Failure::usage(format!("grace `{grace_text}`: {e}; write a duration such as 30s")))?;
    let concurrency = args.concurrency.or(config.concurrency).unwrap_or(32);
    if concurrency == 0 {
        return Err(Failure::usage("concurrency must be at least 1"));
    }
    if args.host.db.db.is_none() {
        args.host.db.db = config.db.clone();
    }
    args.host.db.pool = args.db_pool.or(config.db_pool);
    let url = args.host.db.db.clone().unwrap_or_else(tether_store::default_database_url);
    let small = args.host.db.pool.filter(|n| *n < tether_store::MIN_POOL_SIZE && tether_store::is_postgres(&url));
    if let Some(n) = small {
        return Err(Failure::usage(format!(
            "db_pool {n}: a server needs at least {} connections to a PostgreSQL journal (its writer, its \
             listener and one for reads)",
            tether_store::MIN_POOL_SIZE
        )));
    }
    let workflows_dir = args.workflows.clone().or(config.workflows.clone());
    let workflows = match &workflows_dir {
        Some(dir) => Workflows::load(dir).map_err(|e| Failure::usage(format!("workflows: {e}")))?,
        None => Workflows::default(),
    };
    // The server holds the secrets: put into its environment before any thread starts,
    // where grants and credentials read them.
    for (name, value) in config.secret_values().map_err(|e| Failure::usage(format!("--config: {e}")))? {
        std::env::set_var(name, value);
    }
    let mut schedules = Vec::new();
    for spec in config.schedules.clone() {
        let schedule = Schedule::parse(spec).map_err(|e| Failure::usage(format!("--config: {e}")))?;
        if workflows.get(&schedule.spec.workflow).is_none() {
            return Err(Failure::usage(format!(
                "--config: schedule `{}`: no workflow `{}` is registered (--workflows DIR)",
                schedule.spec.name, schedule.spec.workflow
            )));
        }
        schedules.push(schedule);
    }
    let mut hooks = BTreeMap::new();
    for hook in config.webhooks.clone() {
        if workflows.get(&hook.workflow).is_none() {
            return Err(Failure::usage(format!(
                "--config: webhook `{}`: no workflow `{}` is registered (--workflows DIR)",
                hook.name, hook.workflow
            )));
        }
        if std::env::var(&hook.secret).map_or(true, |v| v.is_empty()) {
            return Err(Failure::usage(format!(
                "--config: webhook `{}`: its secret `{}` is neither in [secrets] nor set in the environment",
                hook.name, hook.secret
            )));
        }
        hooks.insert(hook.name.clone(), hook);
    }
    crate::setup::async_runtime()?.block_on(async {
        let app = Arc::new(args.host.app(crate::setup::leases(std::time::Duration::ZERO)?, true).await?);
        let worker = Worker::new(app, WorkerConfig { concurrency, grace, ..WorkerConfig::default() });
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .map_err(|e| Failure::usage(format!("listen {listen}: cannot listen there: {e}")))?;
        let address = listener.local_addr().map_err(|e| Failure::Internal(e.to_string()))?;
        let names = workflows.names();
        println!("listening on http://{address}");
        let _ = std::io::stdout().flush();
        if !names.is_empty() {
            eprintln!("workflows: {}", names.join(", "));
        }
        for s in &schedules {
            eprintln!("schedule {}: `{}` runs {} ({} overlap)", s.spec.name, s.spec.cron, s.spec.workflow, overlap(s));
        }
        let timers = tokio::spawn(Arc::clone(&worker).run_timers());
        let workflows = Registry::new(workflows_dir, workflows);
        let server = Arc::new(Server {
            worker: Arc::clone(&worker),
            workflows,
            hooks,
            sessions: Default::default(),
            pages: Default::default(),
        });
        let ticking = tokio::spawn(tether_server::triggers::run_schedules(Arc::clone(&server), schedules));
        let (close_http, http_closed) = tokio::sync::oneshot::channel::<()>();
        let mut http = tokio::spawn(tether_server::serve(server, listener, async {
            let _ = http_closed.await;
        }));
        tokio::select! {
            () = stopped() => {}
            ended = &mut http => {
                let why = match ended {
                    Ok(Err(e)) => e.to_string(),
                    Ok(Ok(())) => "it ended".into(),
                    Err(e) => e.to_string(),
                };
                return Err(Failure::Internal(format!("the server stopped: {why}")));
            }
        }
        // Draining starts at once, while the HTTP server answers what is under way (and
        // takes no new connection); streams that follow runs end with the drain.
        eprintln!("stopping: no new work; running attempts get up to {}", humantime::format_duration(grace));
        let _ = close_http.send(());
        let stopped = worker.stop().await;
        let _ = timers.await;
        let _ = ticking.await;
        if tokio::time::timeout(std::time::Duration::from_secs(5), http).await.is_err() {
            eprintln!("stopping: connections still open after the drain were closed");
        }
        eprintln!(
            "stopped: {} run(s) settled, {} interrupted (the next start takes them over)",
            stopped.settled, stopped.interrupted
        );
        Ok(ExitCode::SUCCESS)
    })
}

fn overlap(s: &Schedule) -> &'static str {
    match s.spec.overlap {
        tether_app::schedule::Overlap::Skip => "skip",
        tether_app::schedule::Overlap::Allow => "allow",
    }
}

/// Completes on SIGTERM or Ctrl-C (SIGINT).
async fn stopped() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(t) => t,
            Err(_) => {
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
