//! `tether serve`: the HTTP API and a worker on a journal, until SIGTERM or Ctrl-C.
//! Prints the address it listens on first (with `--listen 127.0.0.1:0`, the port it was
//! given), then what it does at start (runs taken over) and at its stop.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use tether_app::{Worker, WorkerConfig};
use tether_server::{Server, Workflows};

use crate::cli::ServeArgs;
use crate::Failure;

pub(crate) fn serve(args: ServeArgs) -> Result<ExitCode, Failure> {
    let grace = humantime::parse_duration(&args.grace)
        .map_err(|e| Failure::usage(format!("--grace `{}`: {e}; write a duration such as 30s", args.grace)))?;
    if args.concurrency == 0 {
        return Err(Failure::usage("--concurrency must be at least 1"));
    }
    let workflows = match &args.workflows {
        Some(dir) => Workflows::load(dir).map_err(|e| Failure::usage(format!("--workflows: {e}")))?,
        None => Workflows::default(),
    };
    crate::setup::async_runtime()?.block_on(async {
        let app = Arc::new(args.host.app(crate::setup::leases(std::time::Duration::ZERO)?, true).await?);
        let config = WorkerConfig { concurrency: args.concurrency, grace, ..WorkerConfig::default() };
        let worker = Worker::new(app, config);
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .map_err(|e| Failure::usage(format!("--listen {}: cannot listen there: {e}", args.listen)))?;
        let address = listener.local_addr().map_err(|e| Failure::Internal(e.to_string()))?;
        let names = workflows.names();
        println!("listening on http://{address}");
        let _ = std::io::stdout().flush();
        if !names.is_empty() {
            eprintln!("workflows: {}", names.join(", "));
        }
        let timers = tokio::spawn(Arc::clone(&worker).run_timers());
        let server = Arc::new(Server { worker: Arc::clone(&worker), workflows });
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
