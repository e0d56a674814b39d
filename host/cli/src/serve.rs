//! `tether serve`: the HTTP API on a journal, until SIGTERM or Ctrl-C. Prints the address
//! it listens on first (with `--listen 127.0.0.1:0`, the port it was given).

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use tether_app::App;

use crate::cli::ServeArgs;
use crate::Failure;

pub(crate) fn serve(args: ServeArgs) -> Result<ExitCode, Failure> {
    crate::setup::async_runtime()?.block_on(async {
        let store = args.db.open().await?;
        let app = Arc::new(App::new(store, tether_runtime::RuntimeConfig::default(), Default::default()));
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .map_err(|e| Failure::usage(format!("--listen {}: cannot listen there: {e}", args.listen)))?;
        let address = listener.local_addr().map_err(|e| Failure::Internal(e.to_string()))?;
        println!("listening on http://{address}");
        let _ = std::io::stdout().flush();
        tether_server::serve(app, listener, stopped())
            .await
            .map_err(|e| Failure::Internal(format!("the server stopped: {e}")))?;
        eprintln!("stopped: requests under way were answered");
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
