//! `tether`: run workflow steps and agent tools as sandboxed WebAssembly components.
//!
//! `main` is thin: it parses flags, runs a command, prints errors and owns exit codes.

mod cancel;
mod cli;
mod client;
mod copy;
mod failure;
mod files;
mod govern;
mod inspect;
mod journal;
mod new;
mod output;
mod plugin;
mod remote;
mod run;
mod serve;
mod setup;
mod show;
mod stats;
mod token;
mod validate;
mod verify;
mod workers;

use std::process::ExitCode;

use clap::Parser;

pub(crate) use failure::Failure;

/// Rust ignores SIGPIPE, so printing into a closed pipe (`tether history RUN | head`)
/// would panic on EPIPE. With the default disposition the process ends quietly instead,
/// as other command-line tools do; a run it was executing is resumable, as after any kill.
#[allow(unsafe_code)]
fn restore_sigpipe() {
    // SAFETY: changes one signal's disposition at the start of `main`, before any other
    // thread exists; no handler runs Rust code.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// `tether --db J runs` as `tether runs --db J`: the journal flags belong to each
/// command, but people write them first too. Leading `--db`/`--sync` (with their values)
/// are moved to the end, where the command takes them.
fn journal_flags_last(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let mut moved = Vec::new();
    while args.len() > 1 {
        let first = args[1].to_string_lossy().into_owned();
        let takes_value = first == "--db" || first == "--sync";
        if takes_value && args.len() > 2 {
            moved.extend(args.drain(1..3));
        } else if first.starts_with("--db=") || first.starts_with("--sync=") {
            moved.push(args.remove(1));
        } else {
            break;
        }
    }
    args.extend(moved);
    args
}

fn main() -> ExitCode {
    restore_sigpipe();
    let json = std::env::args_os().any(|a| a == "--json");
    let cli = match cli::Cli::try_parse_from(journal_flags_last(std::env::args_os().collect())) {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help and version to stdout with code 0, errors with code 2.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    // Warnings and errors from the host (not the guests: their logs are journaled) go to
    // stderr as `warning: ...`; a server also says what it does on its own (runs taken
    // over, deadlines fired). TETHER_LOG=debug shows more.
    let serving = matches!(cli.command, cli::Command::Serve(_));
    let level = match std::env::var("TETHER_LOG").as_deref() {
        Ok("debug") => tracing::Level::DEBUG,
        Ok("info") => tracing::Level::INFO,
        Ok("warn") => tracing::Level::WARN,
        _ if serving => tracing::Level::INFO,
        _ => tracing::Level::WARN,
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .without_time()
        .with_target(false)
        .with_ansi(false)
        .init();
    let result = match cli.command {
        cli::Command::Run(args) => client::try_run(&args).unwrap_or_else(|| run::run(args)),
        cli::Command::Resume(args) => run::resume(args),
        cli::Command::Replay(args) => journal::replay(args),
        cli::Command::Runs(args) => client::try_runs(&args).unwrap_or_else(|| journal::runs(args)),
        cli::Command::History(args) => client::try_history(&args).unwrap_or_else(|| journal::history(args)),
        cli::Command::Show(args) => client::try_show(&args).unwrap_or_else(|| show::show(args)),
        cli::Command::Verify(args) => journal::verify(args),
        cli::Command::Backup(args) => journal::backup(args),
        cli::Command::Migrate(args) => journal::migrate(args),
        cli::Command::Copy(args) => copy::copy(args),
        cli::Command::Workers(args) => workers::workers(args),
        cli::Command::Cancel(args) => client::try_cancel(&args).unwrap_or_else(|| cancel::cancel(args)),
        cli::Command::Completions(args) => {
            use clap::CommandFactory;
            clap_complete::generate(args.shell, &mut cli::Cli::command(), "tether", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        cli::Command::Inspect(args) => inspect::inspect(args),
        cli::Command::Validate(args) => validate::validate(args),
        cli::Command::Inbox(args) => client::try_inbox(&args).unwrap_or_else(|| govern::inbox(args)),
        cli::Command::Approve(args) => {
            client::try_decide(&args.decide, true, args.payload.as_deref()).unwrap_or_else(|| govern::approve(args))
        }
        cli::Command::Reject(args) => client::try_decide(&args, false, None).unwrap_or_else(|| govern::reject(args)),
        cli::Command::Override(args) => govern::override_auto(args),
        cli::Command::Stats(args) => client::try_stats(&args).unwrap_or_else(|| stats::stats(args)),
        cli::Command::Sweep(args) => govern::sweep(args),
        cli::Command::Plugin(command) => plugin::plugin(command),
        cli::Command::New(args) => new::new(args),
        cli::Command::Serve(args) => serve::serve(args),
        cli::Command::Token(command) => token::token(command),
    };
    let (kind, code, msg) = match result {
        Ok(code) => return code,
        Err(Failure::Usage(msg)) => ("usage", 2, msg),
        Err(Failure::Internal(msg)) => ("internal", 1, msg),
        Err(Failure::Busy(msg)) => ("busy", 4, msg),
    };
    if json {
        // A script that asked for JSON gets its error as JSON too, on stderr.
        let doc = serde_json::json!({"error": {"kind": kind, "exit_code": code, "message": msg}});
        eprintln!("{}", serde_json::to_string(&doc).expect("JSON values serialize"));
    } else {
        eprintln!("error: {msg}");
    }
    ExitCode::from(code)
}
