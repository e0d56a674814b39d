//! `tether validate`: every check `tether run` makes before running anything, and no run.

use std::path::Path;
use std::process::ExitCode;

use serde_json::json;
use tether_app::policy::PolicyProblems;
use tether_runtime::{Runtime, StoredComponents};
use tether_types::{ManifestError, Workflow};

use crate::cli::ValidateArgs;
use crate::run::read_workflow_text;
use crate::Failure;

pub(crate) fn validate(args: ValidateArgs) -> Result<ExitCode, Failure> {
    let file = args.workflow.display().to_string();
    let text = match read_workflow_text(&args.workflow) {
        Ok(text) => text,
        // Unreadable, not UTF-8, too large: with --json still one document.
        Err(Failure::Usage(m) | Failure::Internal(m) | Failure::Busy(m)) if args.json => {
            let problem = json!({"file": file, "line": null, "column": null, "message": m, "hint": null});
            println!("{}", crate::output::json(&json!({"valid": false, "problems": [problem]})));
            return Ok(ExitCode::from(2));
        }
        Err(e) => return Err(e),
    };
    // Manifest problems first; components are only checked in a manifest that parses.
    let loaded = Workflow::parse(&file, &text).map_err(|e| e.0).and_then(|mut wf| {
        let base = args.workflow.parent().map(Path::to_path_buf).unwrap_or_default();
        tether_app::policy::assemble(&mut wf, None, &base).map_err(|p| match p {
            PolicyProblems::Positioned(list) => list,
            PolicyProblems::Unusable(m) => {
                vec![ManifestError { file: file.clone(), line: 1, column: 1, message: m, hint: None }]
            }
        })?;
        let runtime = args.cache.runtime().map_err(|f| match f {
            Failure::Usage(m) | Failure::Internal(m) | Failure::Busy(m) => {
                vec![ManifestError { file: file.clone(), line: 1, column: 1, message: m, hint: None }]
            }
        })?;
        let stored = stored(&args, &runtime, &wf).map_err(|f| match f {
            Failure::Usage(m) | Failure::Internal(m) | Failure::Busy(m) => {
                vec![ManifestError { file: file.clone(), line: 1, column: 1, message: m, hint: None }]
            }
        })?;
        runtime.load_workflow_with(wf, &base, &stored).map_err(|e| e.0)
    });
    match loaded {
        Ok(wf) => {
            if args.json {
                println!("{}", crate::output::json(&json!({"valid": true, "plan": wf.plan})));
            } else {
                println!(
                    "{file}: valid workflow `{}`: {} steps, {} tools, {} loops",
                    wf.name,
                    wf.plan.steps.len(),
                    wf.tools.len(),
                    wf.plan.loops.len()
                );
                for step in &wf.plan.steps {
                    println!("  {}", describe(step));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(problems) => {
            if args.json {
                let list: Vec<_> = problems
                    .iter()
                    .map(|p| json!({"file": p.file, "line": p.line, "column": p.column, "message": p.message, "hint": p.hint}))
                    .collect();
                println!("{}", crate::output::json(&json!({"valid": false, "problems": list})));
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

/// Components taken from the journal's store (opened only if the workflow has any).
fn stored(args: &ValidateArgs, runtime: &Runtime, wf: &Workflow) -> Result<StoredComponents, Failure> {
    if wf.digest_refs().is_empty() && wf.plugin_refs().is_empty() {
        return Ok(StoredComponents::default());
    }
    crate::setup::async_runtime()?.block_on(async {
        let store = args.db.open_existing().await?;
        Ok(tether_app::stored_components(store.as_ref(), runtime, wf).await?)
    })
}

/// One line per step: what it needs and what kind of step it is.
fn describe(step: &tether_types::plan::PlanStep) -> String {
    let needs = step.needs.as_deref().unwrap_or_default();
    let mut line = step.name.clone();
    if !needs.is_empty() {
        line.push_str(&format!(" <- {}", needs.join(", ")));
    }
    if let Some(cases) = &step.route {
        let targets: Vec<&str> = cases.iter().map(|c| c.to.as_str()).collect();
        line.push_str(&format!("  [route to {}]", targets.join(" | ")));
    }
    if let Some(f) = &step.for_each {
        line.push_str(&format!("  [for each of {}, {} at once]", f.items, f.concurrency));
    }
    if let Some(l) = &step.in_loop {
        line.push_str(&format!("  [in loop {l}]"));
    }
    if let Some(w) = &step.when {
        line.push_str(&format!("  [when {w}]"));
    }
    line
}
