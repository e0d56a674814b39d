//! Command-line flags. Parsed here, turned into settings by each command.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Run workflow steps and agent tools as sandboxed WebAssembly components.
///
/// Each step and tool is a WebAssembly component built against the WIT package
/// `tether:plugin@0.1.0`. It gets nothing by default (no files, environment, network or
/// tools) and runs under hard budgets: fuel, wall time, memory, tool calls, output size.
#[derive(Parser)]
#[command(name = "tether", version, propagate_version = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Run a workflow: its steps in order, each in a fresh sandbox.
    ///
    /// Each step receives the previous step's output; the first receives the run input.
    /// Exit code: 0 completed, 1 failed, 2 bad usage or input.
    ///
    /// Example: tether run plugins/workflows/support-triage.toml --input @ticket.json
    Run(RunArgs),
    /// Show a component's world, imports, exports, size and sha256, and whether it fits
    /// the step or tool world (and if not, which import or export is wrong).
    ///
    /// Example: tether inspect target/plugins/wasm32-wasip2/release/classify.wasm
    Inspect(InspectArgs),
}

#[derive(Args)]
pub(crate) struct RunArgs {
    /// The workflow manifest (TOML).
    pub(crate) workflow: PathBuf,
    /// The run input: JSON text, or @FILE to read it from a file, or @- for stdin.
    #[arg(long, short, default_value = "{}")]
    pub(crate) input: String,
    /// Print one JSON object with run_id, status, output, error, steps and totals.
    #[arg(long)]
    pub(crate) json: bool,
    /// Show every guest log line (by default only warnings and errors are shown).
    #[arg(long, short)]
    pub(crate) verbose: bool,
    #[command(flatten)]
    pub(crate) host: HostArgs,
}

#[derive(Args)]
pub(crate) struct InspectArgs {
    /// The component file (.wasm).
    pub(crate) component: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) host: HostArgs,
}

#[derive(Args)]
pub(crate) struct HostArgs {
    /// Directory for compiled components [default: $TETHER_CACHE_DIR, or the user cache dir]
    #[arg(long, value_name = "DIR")]
    pub(crate) cache_dir: Option<PathBuf>,
    /// Compile every component afresh and write nothing to the cache.
    #[arg(long)]
    pub(crate) no_cache: bool,
}

impl HostArgs {
    pub(crate) fn runtime(&self) -> Result<tether_runtime::Runtime, crate::Failure> {
        let mut config = tether_runtime::RuntimeConfig::default();
        if self.no_cache {
            config.cache_dir = None;
        } else if let Some(dir) = &self.cache_dir {
            config.cache_dir = Some(dir.clone());
        }
        config.max_sandboxes = 16;
        tether_runtime::Runtime::new(config)
            .map_err(|e| crate::Failure::Internal(format!("cannot start the runtime: {e:#}")))
    }
}

/// The async runtime commands run on: one thread, as a CLI run needs no more.
pub(crate) fn async_runtime() -> Result<tokio::runtime::Runtime, crate::Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| crate::Failure::Internal(format!("cannot start the async runtime: {e}")))
}
