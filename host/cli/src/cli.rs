//! Command-line flags. Parsed here, turned into settings by each command.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Run workflow steps and agent tools as sandboxed WebAssembly components.
///
/// Each step and tool is a WebAssembly component built against the WIT package
/// `tether:plugin@0.1.0`. It gets nothing by default (no files, environment, network or
/// tools) and runs under hard budgets: fuel, wall time, memory, tool calls, output size.
/// Every call across a component boundary is journaled, so a run survives a crash
/// (`tether resume`) and can be re-lived exactly (`tether replay`).
#[derive(Parser)]
#[command(
    name = "tether",
    version,
    propagate_version = true,
    after_help = "--db URL and --sync LEVEL may also be given before the command: tether --db journal.db runs"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Run a workflow: each step in a fresh sandbox, journaled.
    ///
    /// Steps run as their needs allow (independent ones in parallel); a step receives the
    /// output of the step it needs, or the run input. The run id is printed first, so an
    /// interrupted run can be continued with `tether resume RUN`. Exit code: 0 completed, 1 failed, 2 bad usage or input,
    /// 3 paused (a run budget ran out; `tether resume RUN --budget METRIC=+N`) or waiting
    /// for a human's approval (`tether inbox`, then `tether approve RUN GATE --as NAME`).
    ///
    /// Example: tether run plugins/workflows/support-triage.toml --input @ticket.json
    Run(RunArgs),
    /// Continue an interrupted run from its journal.
    ///
    /// Completed steps are not run again; an interrupted step is run again with the tool
    /// calls, clock and random reads it had already made served from the journal, so
    /// their side effects happen once. A finished run is only reported. Exit code 4 if
    /// another tether process is executing the run (see --wait).
    Resume(ResumeArgs),
    /// Re-run a recorded run against its journal, with no side effects, and report the
    /// first point where execution differs (or "replay matched N events").
    ///
    /// Tool results, clocks and random numbers come from the journal. With
    /// `--with STEP=new.wasm`, check whether a new version of a step's component would
    /// reproduce the recorded history before deploying it. Exit code 1 on a divergence.
    Replay(ReplayArgs),
    /// List runs, newest first.
    Runs(RunsArgs),
    /// Show a run's timeline: every event with its time, step, fuel and duration.
    History(HistoryArgs),
    /// Show one run at a glance: status, output or error, what it waits on (approvals
    /// with who must still decide and by when, or the budget that ran out), its steps,
    /// totals, and the command that continues it.
    ///
    /// Example: tether show run_01a2 (any unique start of the id)
    Show(ShowArgs),
    /// Check a run's journal (or every run's): the hash chain (edited, missing or
    /// corrupted events), that it ends at its recorded head (a cut tail), and that the
    /// run index agrees with it (an edited status, a missing row). Exit code 1 if
    /// anything is wrong, naming each run and what.
    Verify(VerifyArgs),
    /// Write a consistent copy of the whole journal to a new file, safely while other
    /// tether processes use it (SQLite's `VACUUM INTO`). Copying journal.db by hand can
    /// miss recent runs still in its write-ahead log.
    ///
    /// Example: tether backup /backups/journal-2026-11-29.db
    Backup(BackupArgs),
    /// Create the journal if it does not exist, and bring its schema up to date. Other
    /// commands do this on their own (`run` and `plugin add` create a journal; the rest
    /// only open one); this does it ahead of time, say when deploying.
    ///
    /// Example: tether migrate --db /var/lib/tether/journal.db
    Migrate(MigrateArgs),
    /// Copy a journal into another, from SQLite to PostgreSQL say: every run's events
    /// exactly as recorded (each chain checked first), the components their plans pin,
    /// plugins and API tokens (their hashes: the tokens keep working). Unfinished runs
    /// arrive free for the destination's workers to take. Every run is then verified in
    /// the destination. Exit code 1 names each run not copied (damaged in the source, or
    /// different in the destination) or not intact; the others are copied. Stop the
    /// source's workers first: runs a live host holds are refused. A copy that was
    /// interrupted is run again to finish it (runs already there, identical, are passed
    /// over).
    ///
    /// Example: tether copy --db /var/lib/tether/journal.db --to postgres://tether@db:5432/journal
    Copy(CopyArgs),
    /// List the hosts on the journal: each worker or command (host, pid) with its last
    /// heartbeat, the runs it holds and when each lease lapses unless it beats again, by
    /// the journal's clock. A host whose heartbeat has lapsed is marked: it was killed,
    /// frozen or cut off, and the next worker that looks takes its runs over. A worker
    /// beats every third of $TETHER_LEASE_TTL (30s by default) and leaves when it stops.
    ///
    /// Example: tether workers --db postgres://tether@db:5432/journal
    Workers(WorkersArgs),
    /// Cancel a run: journaled with who and why; nothing more starts, its completed steps
    /// are undone (as for a failure) and it ends `cancelled`. A waiting, paused or
    /// interrupted run is cancelled here, at once. A run another live process is executing
    /// is cancelled by that process (it interrupts the attempts in flight within a fraction
    /// of a second); this command waits for the end, up to --wait (default 30s).
    ///
    /// Example: tether cancel run_01a2 --as alice --reason "customer withdrew the request"
    Cancel(CancelArgs),
    /// Print a shell completion script: bash, zsh, fish, elvish or powershell.
    ///
    /// Example: tether completions bash > ~/.local/share/bash-completion/completions/tether
    Completions(CompletionsArgs),
    /// Show a component's world, imports, exports, size and sha256, and whether it fits
    /// the step or tool world (and if not, which import or export is wrong).
    ///
    /// Example: tether inspect target/plugins/wasm32-wasip2/release/classify.wasm
    Inspect(InspectArgs),
    /// Check a workflow without running it: syntax, names, references, budgets, and that
    /// every component exists and fits its world. Prints every problem, not just the
    /// first, each with its file, line and column. Exit code 0 valid, 2 invalid.
    ///
    /// Example: tether validate plugins/workflows/support-triage.toml
    Validate(ValidateArgs),
    /// List the approval requests runs are waiting for: run, request, gate, what is
    /// proposed, since when, and the deadline.
    Inbox(InboxArgs),
    /// Approve a waiting request, then continue the run (unless --no-continue).
    ///
    /// The approver must be an identity of the run's policy allowed to decide the gate
    /// (`approves = ["GATE"]`); a gate needing two approvers needs two different ones.
    /// `--payload` approves an edited proposal: an override, recorded as such.
    ///
    /// Example: tether approve run_0192… refund --as alice --comment "checked the order"
    Approve(ApproveArgs),
    /// Reject a waiting request, then continue the run: a rejected step fails with class
    /// `rejected` (and the run compensates); a rejected tool call returns `denied` to the step.
    Reject(DecideArgs),
    /// Record that an automatic approval (made by a relaxed gate) was wrong. The run is
    /// not changed; the gate's track record counts an override, which re-arms the gate.
    Override(OverrideArgs),
    /// Figures over recorded runs: success, escalation and rollback rates, per-step
    /// latency (median, p95), fuel and usage per successful run, per-gate override rates.
    Stats(StatsArgs),
    /// Continue runs that wait for an approval whose deadline has passed (taking the
    /// gate's default decision) or that was decided without continuing; for a scheduler.
    Sweep(SweepArgs),
    /// Deploy components to this host under a name and version, without rebuilding it:
    /// add, list, show, remove. Workflows then refer to them as `component = "NAME@VERSION"`.
    ///
    /// A deployed component is stored in the journal's database by sha256 and compiled
    /// into the cache when it is added, so its first run starts without compiling.
    ///
    /// Example: tether plugin add target/guests/summarize.wasm --version 1.0.0
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Create a ready-to-build step or tool project: source, the WIT contract, a build
    /// script (`./build.sh`), a README with the language's prerequisites and failure
    /// semantics, and for a step a workflow to try it with (`try.toml`).
    ///
    /// Example: tether new step summarize-ticket --lang python
    New(NewArgs),
    /// Run tether as a service: the HTTP API, executing runs, firing timers.
    ///
    /// One process executes the runs it is given (`POST /v1/runs`, by workflow name from
    /// --workflows DIR) up to --concurrency at once, continues waiting runs whose approval
    /// deadline passed or whose requests were decided, and takes over interrupted runs
    /// nobody executes (at start and every second). Every /v1 endpoint needs an API
    /// token (`tether token create`); its identity is who acts.
    ///
    /// Prints `listening on http://ADDRESS` first. On SIGTERM or Ctrl-C it stops taking
    /// work, lets running attempts end for up to --grace, and leaves every run durable
    /// for the next start. Errors are JSON: {"error": {"code", "message", "field"}}.
    Serve(ServeArgs),
    /// Make, list and revoke API tokens for `tether serve`.
    ///
    /// A token acts as one identity with roles: viewer (read), runner (start runs),
    /// approver (decide), operator (also cancel, resume), admin (everything). The token
    /// is printed once; the journal keeps only its hash.
    ///
    /// Example: tether token create alice-laptop --identity alice --role approver
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Args)]
pub(crate) struct ServeArgs {
    /// The operator's configuration (TOML): listen, db, db_pool, workflows, concurrency,
    /// grace, [secrets], [[schedules]] and [[webhooks]]; flags given here win over it.
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// The address to listen on (port 0: any free port, printed) [default: 127.0.0.1:8080].
    #[arg(long)]
    pub(crate) listen: Option<String>,
    /// A directory of workflow files (*.toml); runs are started of them by name.
    #[arg(long, value_name = "DIR")]
    pub(crate) workflows: Option<PathBuf>,
    /// Runs executing at once; more wait their turn, their start already durable
    /// [default: 32].
    #[arg(long)]
    pub(crate) concurrency: Option<usize>,
    /// How long running attempts get to end on SIGTERM before they are interrupted
    /// (interrupted attempts are run again from the journal on the next start)
    /// [default: 30s].
    #[arg(long, value_name = "DURATION")]
    pub(crate) grace: Option<String>,
    /// Connections to a PostgreSQL journal this server keeps open (its writer, its
    /// listener and the readers share them) [default: 8, at least 3]. Ignored for SQLite.
    #[arg(long, value_name = "N")]
    pub(crate) db_pool: Option<u32>,
    #[command(flatten)]
    pub(crate) host: HostArgs,
}

#[derive(Subcommand)]
pub(crate) enum TokenCommand {
    /// Make a token and print it (once: only its hash is kept).
    Create(TokenCreateArgs),
    /// List tokens: name, identity, roles, when made, expiry, revocation.
    List(TokenListArgs),
    /// Revoke a token by name: it stops working at once.
    Revoke(TokenRevokeArgs),
}

#[derive(Args)]
pub(crate) struct TokenCreateArgs {
    /// A unique name for the token (who or what holds it), such as alice-laptop.
    pub(crate) name: String,
    /// The identity it acts as (decisions are made as this identity).
    #[arg(long)]
    pub(crate) identity: String,
    /// A role: viewer, runner, approver, operator or admin (repeat for several).
    #[arg(long = "role", value_name = "ROLE", required = true)]
    pub(crate) roles: Vec<String>,
    /// Make it stop working after this long (such as 90d) [default: never].
    #[arg(long, value_name = "DURATION")]
    pub(crate) expires_in: Option<String>,
    /// Print the token and its record as JSON.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) db: DbArgs,
}

#[derive(Args)]
pub(crate) struct TokenListArgs {
    /// Print the list as JSON.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) db: DbArgs,
}

#[derive(Args)]
pub(crate) struct TokenRevokeArgs {
    /// The token's name.
    pub(crate) name: String,
    #[command(flatten)]
    pub(crate) db: DbArgs,
}

#[derive(Args)]
pub(crate) struct NewArgs {
    /// `step` (exports `step`, gets the host interface) or `tool` (exports `tool`).
    #[arg(value_enum)]
    pub(crate) kind: NewKind,
    /// The project's name: lowercase letters, digits and `-` (it names the .wasm too).
    pub(crate) name: String,
    /// The language.
    #[arg(long, value_enum)]
    pub(crate) lang: Lang,
    /// Where to create it [default: ./NAME]. Must not exist, or be empty.
    #[arg(long)]
    pub(crate) dir: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum NewKind {
    /// A workflow step.
    Step,
    /// A tool that steps call.
    Tool,
    /// A tool that calls an HTTP API with a credential the policy binds (Rust).
    ApiTool,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Lang {
    /// Rust with wit-bindgen, built for wasm32-wasip2.
    Rust,
    /// Python with componentize-py.
    Python,
    /// JavaScript with componentize-qjs (QuickJS).
    Js,
    /// C with clang, wasi-libc and the WASI preview1 adapter.
    C,
}

#[derive(Subcommand)]
pub(crate) enum PluginCommand {
    /// Check a component against the step and tool worlds, store it by sha256, compile it
    /// into the cache, and record it as NAME@VERSION (with its world, size and the
    /// languages and tools it says it was built with). Adding the same file again is a
    /// no-op; a NAME@VERSION that already means another component is refused (exit 2).
    #[command(disable_version_flag = true)]
    Add(PluginAddArgs),
    /// List deployed plugins: name, version, world, size, digest, when added.
    List(PluginListArgs),
    /// Show one plugin (NAME@VERSION), or every version of one (NAME).
    Show(PluginShowArgs),
    /// Remove NAME@VERSION. Refused while an unfinished run (running, paused or waiting)
    /// uses it. Its bytes stay in the journal's database, so recorded runs still replay.
    Remove(PluginRemoveArgs),
}

#[derive(Args)]
pub(crate) struct PluginAddArgs {
    /// The component file (.wasm).
    pub(crate) file: PathBuf,
    /// Its name [default: the file name without `.wasm`].
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// Its version, such as 1.0.0 [default: the component's own `version` section, if any].
    #[arg(long)]
    pub(crate) version: Option<String>,
    /// Print the record as JSON.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) host: HostArgs,
}

#[derive(Args)]
pub(crate) struct PluginListArgs {
    /// Print JSON (an array of records).
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) db: DbArgs,
}

#[derive(Args)]
pub(crate) struct PluginShowArgs {
    /// NAME@VERSION, or NAME for every version.
    pub(crate) plugin: String,
    /// Print JSON (an array of records).
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) db: DbArgs,
}

#[derive(Args)]
pub(crate) struct PluginRemoveArgs {
    /// NAME@VERSION.
    pub(crate) plugin: String,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) db: DbArgs,
}

#[derive(Args)]
pub(crate) struct ValidateArgs {
    /// The workflow manifest (TOML).
    pub(crate) workflow: PathBuf,
    /// Print JSON: `valid`, and either the resolved plan or the list of problems.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) cache: CacheArgs,
    /// The journal, read only for components referenced as `sha256:HEX`.
    #[command(flatten)]
    pub(crate) db: DbArgs,
}

#[derive(Args)]
pub(crate) struct RunArgs {
    /// The workflow manifest (TOML).
    pub(crate) workflow: PathBuf,
    /// The run input: JSON text, or @FILE to read it from a file, or @- for stdin.
    #[arg(long, short, default_value = "{}")]
    pub(crate) input: String,
    /// Use this run id (`run_` and letters, digits or `-`) instead of a fresh one, so a
    /// caller can resume or retry the submission by id.
    #[arg(long, value_name = "ID")]
    pub(crate) run_id: Option<String>,
    /// The identity the run executes as [default: the workflow's `identity`, or `local`].
    #[arg(long = "as", value_name = "NAME", value_parser = identity_name)]
    pub(crate) identity: Option<String>,
    /// A policy file (identities, gates, rules) [default: the workflow's `policy_file`].
    /// Combined with the workflow's own `[policy]` table.
    #[arg(long, value_name = "FILE")]
    pub(crate) policy: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) output: OutputArgs,
    #[command(flatten)]
    pub(crate) server: ServerArgs,
    #[command(flatten)]
    pub(crate) host: HostArgs,
}

#[derive(Args)]
pub(crate) struct ResumeArgs {
    /// The run id.
    pub(crate) run: String,
    /// Raise a run budget before continuing (repeatable): `tokens=+5000`, `fuel=+1000000000`,
    /// `tool_calls=+10`, `wall_time=+30s`. The raise is journaled.
    #[arg(long = "budget", value_name = "METRIC=+N")]
    pub(crate) budget: Vec<String>,
    #[command(flatten)]
    pub(crate) wait: WaitArgs,
    #[command(flatten)]
    pub(crate) output: OutputArgs,
    #[command(flatten)]
    pub(crate) host: HostArgs,
}

#[derive(Args)]
pub(crate) struct OutputArgs {
    /// Print one JSON object with run_id, status, output, error, steps and totals.
    #[arg(long)]
    pub(crate) json: bool,
    /// Show every guest log line (by default only warnings and errors are shown).
    #[arg(long, short)]
    pub(crate) verbose: bool,
}

#[derive(Args)]
pub(crate) struct ReplayArgs {
    /// The run id.
    pub(crate) run: String,
    /// Replay STEP with another component instead of the recorded one (repeatable).
    #[arg(long = "with", value_name = "STEP=FILE")]
    pub(crate) with: Vec<String>,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) host: HostArgs,
}

#[derive(Args)]
pub(crate) struct RunsArgs {
    /// Only runs with this status: running, paused, waiting, completed, failed, compensated,
    /// compensation_failed or cancelled.
    #[arg(long)]
    pub(crate) status: Option<String>,
    /// At most this many runs.
    #[arg(long, default_value_t = 50)]
    pub(crate) limit: u32,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) server: ServerArgs,
    #[command(flatten)]
    pub(crate) db: DbArgs,
}

#[derive(Args)]
pub(crate) struct ShowArgs {
    /// The run id, or a unique start of it.
    pub(crate) run: String,
    /// Print JSON (times in RFC 3339).
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) server: ServerArgs,
    #[command(flatten)]
    pub(crate) db: DbArgs,
}

#[derive(Args)]
pub(crate) struct HistoryArgs {
    /// The run id, or a unique start of it.
    pub(crate) run: String,
    /// Print the full events as JSON (stable field names, for export).
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) server: ServerArgs,
    #[command(flatten)]
    pub(crate) db: DbArgs,
}

#[derive(Args)]
pub(crate) struct VerifyArgs {
    /// The run id; without one, every run in the journal is checked.
    pub(crate) run: Option<String>,
    /// Print JSON: one object per run checked, with its problems.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) db: DbArgs,
}

#[derive(Args)]
pub(crate) struct BackupArgs {
    /// The file to write (must not exist).
    pub(crate) file: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) db: DbArgs,
}

#[derive(Args)]
pub(crate) struct CancelArgs {
    /// The run id, or a unique start of it.
    pub(crate) run: String,
    /// Who cancels it, recorded (with --server, leave it out: the token's identity).
    #[arg(long = "as", value_name = "NAME", value_parser = identity_name)]
    pub(crate) identity: Option<String>,
    /// Why (recorded).
    #[arg(long)]
    pub(crate) reason: Option<String>,
    #[command(flatten)]
    pub(crate) wait: WaitArgs,
    #[command(flatten)]
    pub(crate) output: OutputArgs,
    #[command(flatten)]
    pub(crate) server: ServerArgs,
    #[command(flatten)]
    pub(crate) host: HostArgs,
}

#[derive(Args)]
pub(crate) struct CompletionsArgs {
    /// The shell.
    pub(crate) shell: clap_complete::Shell,
}

#[derive(Args)]
pub(crate) struct MigrateArgs {
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) db: DbArgs,
}

#[derive(Args)]
pub(crate) struct CopyArgs {
    /// The journal to copy into: a SQLite path or a postgres:// URL (created or
    /// migrated as needed).
    #[arg(long, value_name = "URL")]
    pub(crate) to: String,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
    /// The journal to copy from.
    #[command(flatten)]
    pub(crate) db: DbArgs,
}

#[derive(Args)]
pub(crate) struct WorkersArgs {
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) db: DbArgs,
}

#[derive(Args)]
pub(crate) struct InspectArgs {
    /// The component file (.wasm).
    pub(crate) component: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) host: CacheArgs,
}

/// `--as NAME`, which a command on a local journal needs.
pub(crate) fn required_identity(identity: &Option<String>) -> Result<String, crate::Failure> {
    identity.clone().ok_or_else(|| {
        crate::Failure::usage(
            "say who acts with --as NAME (an identity of the run's policy), or use --server with a token",
        )
    })
}

#[derive(Args)]
pub(crate) struct ServerArgs {
    /// Ask a `tether serve` at this URL instead of opening a journal (needs TETHER_TOKEN)
    /// [default: $TETHER_SERVER].
    #[arg(long, value_name = "URL")]
    pub(crate) server: Option<String>,
}

#[derive(Args)]
pub(crate) struct DbArgs {
    /// The journal: a SQLite file path, `sqlite:PATH`, or `postgres://USER@HOST:PORT/DB`
    /// [default: $TETHER_DATABASE_URL, or journal.db in the user data dir]
    #[arg(long, value_name = "URL")]
    pub(crate) db: Option<String>,
    /// Commit durability: `full` (a completed step survives power loss) or `normal`
    /// (survives a crash of tether, may lose the last steps on power loss).
    #[arg(long, value_name = "LEVEL", default_value = "full")]
    pub(crate) sync: String,
    /// Connections to a database server (`tether serve --db-pool`).
    #[arg(skip)]
    pub(crate) pool: Option<u32>,
}

#[derive(Args)]
pub(crate) struct CacheArgs {
    /// Directory for compiled components [default: $TETHER_CACHE_DIR, or the user cache dir]
    #[arg(long, value_name = "DIR")]
    pub(crate) cache_dir: Option<PathBuf>,
    /// Compile every component afresh and write nothing to the cache.
    #[arg(long)]
    pub(crate) no_cache: bool,
}

#[derive(Args)]
pub(crate) struct HostArgs {
    #[command(flatten)]
    pub(crate) db: DbArgs,
    #[command(flatten)]
    pub(crate) cache: CacheArgs,
}

#[derive(Args)]
pub(crate) struct WaitArgs {
    /// Wait this long for a run another tether process is executing (`0s`, `30s`, `5m`)
    /// before giving up with exit code 4 [default: 0s for resume and sweep, 10s for
    /// approve, reject and override]. A process on this machine that died is noticed at
    /// once; one elsewhere holds the run until its lease lapses ($TETHER_LEASE_TTL,
    /// default 30s).
    #[arg(long, value_name = "DURATION")]
    pub(crate) wait: Option<String>,
}

#[derive(Args)]
pub(crate) struct InboxArgs {
    /// Print JSON (one object per pending request).
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) server: ServerArgs,
    #[command(flatten)]
    pub(crate) db: DbArgs,
}

#[derive(Args)]
pub(crate) struct DecideArgs {
    /// The run id.
    pub(crate) run: String,
    /// The gate (or the request id, `KEY@CHECKPOINT`, when the run waits at the gate twice).
    pub(crate) gate: String,
    /// Who decides: an identity of the run's policy allowed to decide this gate (with
    /// --server, leave it out: the token's identity decides).
    #[arg(long = "as", value_name = "NAME", value_parser = identity_name)]
    pub(crate) identity: Option<String>,
    /// Why, for the record.
    #[arg(long)]
    pub(crate) comment: Option<String>,
    /// Only record the decision; do not continue the run.
    #[arg(long)]
    pub(crate) no_continue: bool,
    #[command(flatten)]
    pub(crate) wait: WaitArgs,
    #[command(flatten)]
    pub(crate) output: OutputArgs,
    #[command(flatten)]
    pub(crate) server: ServerArgs,
    #[command(flatten)]
    pub(crate) host: HostArgs,
}

#[derive(Args)]
pub(crate) struct ApproveArgs {
    #[command(flatten)]
    pub(crate) decide: DecideArgs,
    /// Approve with an edited proposal (an override, recorded as such): JSON text, or @FILE.
    #[arg(long, value_name = "JSON")]
    pub(crate) payload: Option<String>,
}

#[derive(Args)]
pub(crate) struct OverrideArgs {
    /// The run id.
    pub(crate) run: String,
    /// The gate (or the request id).
    pub(crate) gate: String,
    /// The reviewer: an identity allowed to decide this gate.
    #[arg(long = "as", value_name = "NAME", value_parser = identity_name)]
    pub(crate) identity: String,
    /// What the decision should have been: JSON text, or @FILE.
    #[arg(long, value_name = "JSON")]
    pub(crate) payload: Option<String>,
    /// Why, for the record.
    #[arg(long)]
    pub(crate) comment: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) wait: WaitArgs,
    #[command(flatten)]
    pub(crate) db: DbArgs,
}

#[derive(Args)]
pub(crate) struct StatsArgs {
    /// Only runs of this workflow.
    #[arg(long)]
    pub(crate) workflow: Option<String>,
    /// Only runs started in this recent period (`24h`, `7days`) or since this UTC time
    /// (`2026-11-01` or `2026-11-01T12:00:00Z`).
    #[arg(long, value_name = "WHEN")]
    pub(crate) since: Option<String>,
    /// At most this many runs, newest first.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) limit: u32,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) server: ServerArgs,
    #[command(flatten)]
    pub(crate) db: DbArgs,
}

#[derive(Args)]
pub(crate) struct SweepArgs {
    #[command(flatten)]
    pub(crate) wait: WaitArgs,
    #[command(flatten)]
    pub(crate) output: OutputArgs,
    #[command(flatten)]
    pub(crate) host: HostArgs,
}

/// `--as NAME`: an identity name by the policy's rule (not empty, no spaces or control
/// characters, not a name the host uses for its own decisions).
fn identity_name(name: &str) -> Result<String, String> {
    tether_types::policy::check_identity_name(name).map(|()| name.to_string())
}
