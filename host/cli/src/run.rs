//! `tether run`.

use std::io::{IsTerminal, Read};
use std::path::Path;
use std::process::ExitCode;

use serde::de::IgnoredAny;
use tether_runtime::Progress;
use tether_types::{RunId, RunStatus, Workflow};

use crate::cli::RunArgs;
use crate::output;
use crate::Failure;

pub(crate) fn run(args: RunArgs) -> Result<ExitCode, Failure> {
    let input = read_input(&args.input)?;
    let workflow = read_workflow(&args.workflow)?;
    let runtime = args.host.runtime()?;
    let base = args.workflow.parent().map(Path::to_path_buf).unwrap_or_default();
    let loaded = runtime.load_workflow(workflow, &base).map_err(|e| Failure::usage(e.to_string()))?;

    let run_id =
        RunId::from_suffix(&uuid::Uuid::now_v7().simple().to_string()).expect("a UUID is a valid run id suffix");
    let tty = std::io::stderr().is_terminal();
    let verbose = args.verbose;
    let total = loaded.steps.len();
    let rt = crate::cli::async_runtime()?;
    let report = rt.block_on(runtime.run_workflow(&loaded, run_id, &input, |p| {
        if !args.json || tty {
            match p {
                Progress::StepStarted { index, name } if tty => output::step_started(index, total, name),
                Progress::StepStarted { .. } => {}
                Progress::StepFinished { index, report } => output::step_finished(index, total, report, verbose, tty),
            }
        }
    }));

    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).expect("reports serialize"));
    } else {
        output::run_summary(&report);
    }
    Ok(match report.status {
        RunStatus::Completed => ExitCode::SUCCESS,
        RunStatus::Failed => ExitCode::from(1),
    })
}

/// `--input`: JSON text, `@FILE`, or `@-` for stdin. Must be JSON.
fn read_input(arg: &str) -> Result<String, Failure> {
    let (text, origin) = match arg.strip_prefix('@') {
        Some("-") => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| Failure::usage(format!("cannot read the input from stdin: {e}")))?;
            (s, "stdin".to_string())
        }
        Some(path) => {
            let s = std::fs::read_to_string(path)
                .map_err(|e| Failure::usage(format!("cannot read the input file {path}: {e}")))?;
            (s, path.to_string())
        }
        None => (arg.to_string(), "--input".to_string()),
    };
    serde_json::from_str::<IgnoredAny>(&text).map_err(|e| {
        Failure::usage(format!("{origin}: the input is not valid JSON: {e} (pass JSON text, or @FILE to read a file)"))
    })?;
    Ok(text)
}

fn read_workflow(path: &Path) -> Result<Workflow, Failure> {
    let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Failure::usage(format!("{}: workflow file not found", path.display())),
        _ => Failure::usage(format!("{}: cannot read the workflow file: {e}", path.display())),
    })?;
    Workflow::parse(&path.display().to_string(), &text).map_err(|e| Failure::usage(e.to_string()))
}
