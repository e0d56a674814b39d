//! New projects: a ready-to-build step or tool in Rust, Python, JavaScript or C, from the
//! templates in templates/ (embedded in the binary), with the WIT contract, a build
//! script, a README and, for a step, a workflow to try it with.

use std::path::{Path, PathBuf};

use crate::AppError;

/// The language of a new project.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    /// Rust with wit-bindgen, built for wasm32-wasip2.
    Rust,
    /// Python with componentize-py.
    Python,
    /// JavaScript with componentize-qjs (QuickJS).
    Js,
    /// C with clang, wasi-libc and the WASI preview1 adapter.
    C,
}

impl Lang {
    /// Its name for people.
    pub fn as_str(self) -> &'static str {
        match self {
            Lang::Rust => "Rust",
            Lang::Python => "Python",
            Lang::Js => "JavaScript",
            Lang::C => "C",
        }
    }
}

/// What a new project builds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A workflow step.
    Step,
    /// A tool that steps call.
    Tool,
    /// A tool that calls an HTTP API, whose credential the policy binds (Rust).
    ApiTool,
}

/// A project to create.
#[derive(Clone, Debug)]
pub struct NewProject {
    /// Its name: the component's, the crate's and the plugin's.
    pub name: String,
    /// Its language.
    pub lang: Lang,
    /// Step or tool.
    pub kind: Kind,
    /// Where to write it: a directory that does not exist or is empty.
    pub dir: PathBuf,
}

/// The files of a new project, by path within it, with the name filled in.
pub fn project_files(name: &str, lang: Lang, kind: Kind) -> Result<Vec<(String, Vec<u8>)>, AppError> {
    check_name(name)?;
    let (world, memory) = match kind {
        Kind::Step => ("step-plugin", if lang == Lang::Python { "64MiB" } else { "32MiB" }),
        Kind::Tool => ("tool-plugin", "32MiB"),
        Kind::ApiTool if lang == Lang::Rust => ("tool-plugin-http", "32MiB"),
        Kind::ApiTool => {
            return Err(AppError::BadInput(format!(
                "the api-tool template is written in Rust: use --lang rust (a {} tool calls an API with its \
                 toolchain's own wasi:http, see the README's Outbound HTTP)",
                lang.as_str()
            )))
        }
    };
    let kind_text = match kind {
        Kind::Step => "step",
        Kind::Tool | Kind::ApiTool => "tool",
    };
    let fill = |text: &str| {
        text.replace("{{usage}}", usage(kind))
            .replace("{{name_snake}}", &name.replace('-', "_"))
            .replace("{{name}}", name)
            .replace("{{kind}}", kind_text)
            .replace("{{world_snake}}", &world.replace('-', "_"))
            .replace("{{world}}", world)
            .replace("{{memory}}", memory)
    };
    Ok(files(lang, kind)
        .into_iter()
        .map(|file| match file {
            File::Text(path, text) => (path.to_string(), fill(text).into_bytes()),
            File::Bytes(path, bytes) => (path.to_string(), bytes.to_vec()),
        })
        .collect())
}

/// Writes a new project. A directory that exists and holds anything is refused.
pub fn create_project(project: &NewProject) -> Result<(), AppError> {
    let files = project_files(&project.name, project.lang, project.kind)?;
    let dir = &project.dir;
    if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(AppError::DirectoryNotEmpty { dir: dir.clone() });
    }
    for (path, bytes) in files {
        write(&dir.join(path), &bytes)?;
    }
    make_executable(&dir.join("build.sh"))
}

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

fn files(lang: Lang, kind: Kind) -> Vec<File> {
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
    if kind == Kind::Step {
        files.push(Text("try.toml", TRY_STEP));
    }
    match (lang, kind) {
        (Lang::Rust, kind) => {
            files.push(Text("Cargo.toml", template!("rust/Cargo.toml")));
            files.push(match kind {
                Kind::Step => Text("src/lib.rs", template!("rust/step/src/lib.rs")),
                Kind::Tool => Text("src/lib.rs", template!("rust/tool/src/lib.rs")),
                Kind::ApiTool => Text("src/lib.rs", template!("rust/http-tool/src/lib.rs")),
            });
            if kind == Kind::ApiTool {
                files.extend([
                    Text("wit/http.wit", repo!("wit/http.wit")),
                    Text("wit/deps/http.wit", repo!("wit/deps/http.wit")),
                    Text("wit/deps/io.wit", repo!("wit/deps/io.wit")),
                    Text("wit/deps/clocks.wit", repo!("wit/deps/clocks.wit")),
                    Text("wit/deps/random.wit", repo!("wit/deps/random.wit")),
                    Text("wit/deps/cli.wit", repo!("wit/deps/cli.wit")),
                    Text("wit/deps/filesystem.wit", repo!("wit/deps/filesystem.wit")),
                    Text("wit/deps/sockets.wit", repo!("wit/deps/sockets.wit")),
                ]);
            }
        }
        (_, Kind::ApiTool) => {}
        (Lang::Python, Kind::Step) => files.push(Text("app.py", template!("python/step/app.py"))),
        (Lang::Python, Kind::Tool) => files.push(Text("app.py", template!("python/tool/app.py"))),
        (Lang::Js, Kind::Step) => files.push(Text("step.js", template!("js/step/step.js"))),
        (Lang::Js, Kind::Tool) => files.push(Text("tool.js", template!("js/tool/tool.js"))),
        (Lang::C, kind) => {
            files.push(Text("bindings/tether_json.h", C_JSON));
            files.push(Bytes(
                "wasi_snapshot_preview1.reactor.wasm",
                wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
            ));
            files.extend(match kind {
                Kind::Step => [
                    Text("step.c", template!("c/step/step.c")),
                    Text("bindings/step_plugin.c", repo!("sdk/c/step_plugin/step_plugin.c")),
                    Text("bindings/step_plugin.h", repo!("sdk/c/step_plugin/step_plugin.h")),
                    Bytes(
                        "bindings/step_plugin_component_type.o",
                        repo_bytes!("sdk/c/step_plugin/step_plugin_component_type.o"),
                    ),
                ],
                // (An api-tool in C was refused by `project_files`.)
                Kind::Tool | Kind::ApiTool => [
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

fn usage(kind: Kind) -> &'static str {
    match kind {
        Kind::Step => {
            "```sh\ntether run try.toml --input '{\"name\": \"Ada\"}'\n```\n\n\
             `try.toml` is a one-step workflow. The step greets `name`; with `\"tool\": \"NAME\"` in its\n\
             input it also calls that tool (declare the tool in the workflow and grant it to the step\n\
             with `tools = [\"NAME\"]`)."
        }
        Kind::ApiTool => {
            "```sh\ntether inspect {{name}}.wasm    # its world, and what describe() returns\n```\n\n\
             It GETs `API_URL` + the `path` of its input. Declare it, grant it the API, and let the\n\
             policy bind the API's token to it (the tool never holds the token: the host adds it):\n\n\
             ```toml\n# workflow.toml\nidentity = \"me\"\npolicy_file = \"policy.toml\"\n\n\
             [tools.{{name}}]\ncomponent = \"{{name}}.wasm\"\nenv = [\"API_URL\"]\n\
             http = [\"https://api.example.com\"]\n\n[[steps]]\nname = \"...\"\ncomponent = \"...\"\n\
             tools = [\"{{name}}\"]\n\n# policy.toml\n[identities.me]\ntools = [\"{{name}}\"]\n\
             env = [\"API_URL\"]\nhttp = [{ url = \"https://api.example.com\", credential = { secret = \"API_TOKEN\" } }]\n```\n\n\
             Run tether with `API_URL` and `API_TOKEN` in its environment. Every request is checked\n\
             against both grants and journaled (the token's name, never its value)."
        }
        Kind::Tool => {
            "```sh\ntether inspect {{name}}.wasm    # its world, and what describe() returns\n```\n\n\
             Declare it in a workflow and grant it to a step:\n\n\
             ```toml\n[tools.{{name}}]\ncomponent = \"{{name}}.wasm\"\n\n[[steps]]\nname = \"...\"\n\
             component = \"...\"\ntools = [\"{{name}}\"]\n```\n\n\
             The step calls it by name with JSON input (`{\"text\": \"...\"}`); it answers with `chars`."
        }
    }
}

/// Checks a project name: it becomes a file name, a Rust crate name and a plugin name.
fn check_name(name: &str) -> Result<(), AppError> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(AppError::BadInput(format!(
            "`{name}` cannot name a project: use lowercase letters, digits and `-`, starting with a letter \
             (for example summarize-ticket)"
        )))
    }
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), AppError> {
    let fail = |e: std::io::Error| AppError::BadInput(format!("{}: cannot write it: {e}", path.display()));
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(fail)?;
    }
    std::fs::write(path, bytes).map_err(fail)
}

fn make_executable(path: &Path) -> Result<(), AppError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| AppError::BadInput(format!("{}: cannot make it executable: {e}", path.display())))
}
