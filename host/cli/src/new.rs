//! `tether new step|tool NAME --lang rust|python|js|c`: a ready-to-build project from the
//! templates in templates/ (embedded in the binary), with the WIT contract, a build script,
//! a README and, for a step, a workflow to try it with.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::cli::{Lang, NewArgs, NewKind};
use crate::Failure;

/// One file of a template: its path in the new project and its contents.
enum File {
    Text(&'static str, &'static str),
    Bytes(&'static str, &'static [u8]),
}

/// A text file of the repository, embedded.
macro_rules! repo {
    ($path:literal) => {
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../", $path))
    };
}

/// A file under templates/, embedded.
macro_rules! template {
    ($path:literal) => {
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../templates/", $path))
    };
}

/// A binary file of the repository, embedded.
macro_rules! repo_bytes {
    ($path:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../", $path))
    };
}

const WIT: &str = repo!("wit/tether.wit");
const C_JSON: &str = repo!("sdk/c/tether_json.h");

fn files(lang: Lang, kind: NewKind) -> Vec<File> {
    use File::{Bytes, Text};
    let (build, readme) = match lang {
        Lang::Rust => (template!("rust/build.sh"), template!("rust/README.md")),
        Lang::Python => (template!("python/build.sh"), template!("python/README.md")),
        Lang::Js => (template!("js/build.sh"), template!("js/README.md")),
        Lang::C => (template!("c/build.sh"), template!("c/README.md")),
    };
    let mut files = vec![
        Text("wit/tether.wit", WIT),
        Text("build.sh", build),
        Text("README.md", readme),
        Text(".gitignore", "*.wasm\n!wasi_snapshot_preview1.reactor.wasm\ntarget/\n.venv/\nnode_modules/\n"),
    ];
    if kind == NewKind::Step {
        files.push(Text("try.toml", TRY_STEP));
    }
    match (lang, kind) {
        (Lang::Rust, kind) => {
            files.push(Text("Cargo.toml", template!("rust/Cargo.toml")));
            files.push(match kind {
                NewKind::Step => Text("src/lib.rs", template!("rust/step/src/lib.rs")),
                NewKind::Tool => Text("src/lib.rs", template!("rust/tool/src/lib.rs")),
            });
        }
        (Lang::Python, NewKind::Step) => files.push(Text("app.py", template!("python/step/app.py"))),
        (Lang::Python, NewKind::Tool) => files.push(Text("app.py", template!("python/tool/app.py"))),
        (Lang::Js, NewKind::Step) => files.push(Text("step.js", template!("js/step/step.js"))),
        (Lang::Js, NewKind::Tool) => files.push(Text("tool.js", template!("js/tool/tool.js"))),
        (Lang::C, kind) => {
            files.push(Text("bindings/tether_json.h", C_JSON));
            files.push(Bytes(
                "wasi_snapshot_preview1.reactor.wasm",
                wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
            ));
            files.extend(match kind {
                NewKind::Step => [
                    Text("step.c", template!("c/step/step.c")),
                    Text("bindings/step_plugin.c", repo!("sdk/c/step_plugin/step_plugin.c")),
                    Text("bindings/step_plugin.h", repo!("sdk/c/step_plugin/step_plugin.h")),
                    Bytes(
                        "bindings/step_plugin_component_type.o",
                        repo_bytes!("sdk/c/step_plugin/step_plugin_component_type.o"),
                    ),
                ],
                NewKind::Tool => [
                    Text("tool.c", template!("c/tool/tool.c")),
                    Text("bindings/tool_plugin.c", repo!("sdk/c/tool_plugin/tool_plugin.c")),
                    Text("bindings/tool_plugin.h", repo!("sdk/c/tool_plugin/tool_plugin.h")),
                    Bytes(
                        "bindings/tool_plugin_component_type.o",
                        repo_bytes!("sdk/c/tool_plugin/tool_plugin_component_type.o"),
                    ),
                ],
            })
        }
    }
    files
}

/// A workflow that runs the new step once (`tether run try.toml --input '{"name": "Ada"}'`).
const TRY_STEP: &str = r#"# Runs the {{name}} step once: tether run try.toml --input '{"name": "Ada"}'
# To let it call a tool, declare the tool, grant it to the step, and name it in the input:
#   [tools.my-tool]
#   component = "../my-tool/my-tool.wasm"
# with `tools = ["my-tool"]` on the step and --input '{"name": "Ada", "tool": "my-tool"}'.
name = "try-{{name}}"

[[steps]]
name = "{{name}}"
component = "{{name}}.wasm"
budget = { memory = "{{memory}}", tool_calls = 1 }
"#;

fn usage(kind: NewKind) -> &'static str {
    match kind {
        NewKind::Step => {
            "```sh\ntether run try.toml --input '{\"name\": \"Ada\"}'\n```\n\n\
             `try.toml` is a one-step workflow. The step greets `name`; with `\"tool\": \"NAME\"` in its\n\
             input it also calls that tool (declare the tool in the workflow and grant it to the step\n\
             with `tools = [\"NAME\"]`)."
        }
        NewKind::Tool => {
            "```sh\ntether inspect {{name}}.wasm    # its world, and what describe() returns\n```\n\n\
             Declare it in a workflow and grant it to a step:\n\n\
             ```toml\n[tools.{{name}}]\ncomponent = \"{{name}}.wasm\"\n\n[[steps]]\nname = \"...\"\n\
             component = \"...\"\ntools = [\"{{name}}\"]\n```\n\n\
             The step calls it by name with JSON input (`{\"text\": \"...\"}`); it answers with `chars`."
        }
    }
}

/// Checks a project name: it becomes a file name, a Rust crate name and a plugin name.
fn check_name(name: &str) -> Result<(), Failure> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(Failure::usage(format!(
            "`{name}` cannot name a project: use lowercase letters, digits and `-`, starting with a letter \
             (for example summarize-ticket)"
        )))
    }
}

pub(crate) fn new(args: NewArgs) -> Result<ExitCode, Failure> {
    check_name(&args.name)?;
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from(&args.name));
    if std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(Failure::usage(format!(
            "{}: the directory exists and is not empty; choose another with --dir",
            dir.display()
        )));
    }
    let (world, memory) = match args.kind {
        NewKind::Step => ("step-plugin", if args.lang == Lang::Python { "64MiB" } else { "32MiB" }),
        NewKind::Tool => ("tool-plugin", "32MiB"),
    };
    let kind = match args.kind {
        NewKind::Step => "step",
        NewKind::Tool => "tool",
    };
    let fill = |text: &str| {
        text.replace("{{usage}}", usage(args.kind))
            .replace("{{name_snake}}", &args.name.replace('-', "_"))
            .replace("{{name}}", &args.name)
            .replace("{{kind}}", kind)
            .replace("{{world_snake}}", &world.replace('-', "_"))
            .replace("{{world}}", world)
            .replace("{{memory}}", memory)
    };
    for file in files(args.lang, args.kind) {
        let (path, bytes) = match file {
            File::Text(path, text) => (path, fill(text).into_bytes()),
            File::Bytes(path, bytes) => (path, bytes.to_vec()),
        };
        write(&dir.join(path), &bytes)?;
    }
    make_executable(&dir.join("build.sh"))?;
    println!("created {} ({kind} in {}) in {}", args.name, args.lang.as_str(), dir.display());
    println!("next:\n  cd {}\n  ./build.sh", dir.display());
    match args.kind {
        NewKind::Step => println!("  tether run try.toml --input '{{\"name\": \"Ada\"}}'"),
        NewKind::Tool => println!("  tether inspect {}.wasm", args.name),
    }
    println!("README.md has the prerequisites, failure semantics and how to deploy it.");
    Ok(ExitCode::SUCCESS)
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let fail = |e: std::io::Error| Failure::usage(format!("{}: cannot write it: {e}", path.display()));
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(fail)?;
    }
    std::fs::write(path, bytes).map_err(fail)
}

fn make_executable(path: &Path) -> Result<(), Failure> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| Failure::usage(format!("{}: cannot make it executable: {e}", path.display())))
}
