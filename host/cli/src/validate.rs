//! `tether validate`: every check `tether run` makes before running anything, and no run.

use std::path::Path;
use std::process::ExitCode;

use serde_json::json;
use tether_types::{ManifestError, Workflow};

use crate::cli::ValidateArgs;
use crate::run::read_workflow_text;
use crate::Failure;

pub(crate) fn validate(args: ValidateArgs) -> Result<ExitCode, Failure> {
    let text = read_workflow_text(&args.workflow)?;
    let file = args.workflow.display().to_string();
    // Manifest problems first; components are only checked in a manifest that parses.
    let loaded = Workflow::parse(&file, &text).map_err(|e| e.0).and_then(|wf| {
        let base = args.workflow.parent().map(Path::to_path_buf).unwrap_or_default();
        let runtime = args.cache.runtime().map_err(|f| match f {
            Failure::Usage(m) | Failure::Internal(m) => {
                vec![ManifestError { file: file.clone(), line: 1, column: 1, message: m, hint: None }]
            }
        })?;
        runtime.load_workflow(wf, &base).map_err(|e| e.0)
    });
    match loaded {
        Ok(wf) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({"valid": true, "plan": wf.plan})).expect("plans serialize")
                );
            } else {
                println!(
                    "{file}: valid workflow `{}`: {} steps ({}), {} tools",
                    wf.name,
                    wf.steps.len(),
                    wf.steps.iter().map(|s| s.spec.name.as_str()).collect::<Vec<_>>().join(" -> "),
                    wf.tools.len()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(problems) => {
            if args.json {
                let list: Vec<_> = problems
                    .iter()
                    .map(|p| json!({"file": p.file, "line": p.line, "column": p.column, "message": p.message, "hint": p.hint}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&json!({"valid": false, "problems": list})).expect("JSON"));
            } else {
                for p in &problems {
                    eprintln!("{p}");
                }
                eprintln!("{file}: {} problem{}", problems.len(), if problems.len() == 1 { "" } else { "s" });
            }
            Ok(ExitCode::from(2))
        }
    }
}
