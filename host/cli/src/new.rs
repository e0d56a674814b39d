//! `tether new step|tool NAME --lang rust|python|js|c`: the application writes the
//! project; here are its flags and what to do next.

use std::path::PathBuf;
use std::process::ExitCode;

use tether_app::new::{create_project, Kind, NewProject};

use crate::cli::{Lang, NewArgs, NewKind};
use crate::Failure;

pub(crate) fn new(args: NewArgs) -> Result<ExitCode, Failure> {
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from(&args.name));
    let lang = match args.lang {
        Lang::Rust => tether_app::new::Lang::Rust,
        Lang::Python => tether_app::new::Lang::Python,
        Lang::Js => tether_app::new::Lang::Js,
        Lang::C => tether_app::new::Lang::C,
    };
    let kind = match args.kind {
        NewKind::Step => Kind::Step,
        NewKind::Tool => Kind::Tool,
        NewKind::ApiTool => Kind::ApiTool,
    };
    let project = NewProject { name: args.name.clone(), lang, kind, dir: dir.clone() };
    create_project(&project)?;
    let kind_text = if kind == Kind::Step { "step" } else { "tool" };

    println!("created {} ({kind_text} in {}) in {}", args.name, lang.as_str(), dir.display());
    println!("next:\n  cd {}\n  ./build.sh", dir.display());
    match kind {
        Kind::Step => println!("  tether run try.toml --input '{{\"name\": \"Ada\"}}'"),
        Kind::Tool | Kind::ApiTool => println!("  tether inspect {}.wasm", args.name),
    }
    println!("README.md has the prerequisites, failure semantics and how to deploy it.");
    Ok(ExitCode::SUCCESS)
}
