//! `tether plugin add|list|show|remove`: the plugin store.

use std::process::ExitCode;
use std::sync::Arc;

use serde_json::json;
use tether_app::{AppError, Deploy, Deployed};
use tether_types::plugin_ref;
use tether_types::store::{PluginAdded, PluginRecord};

use crate::cli::{PluginAddArgs, PluginCommand, PluginListArgs, PluginRemoveArgs, PluginShowArgs};
use crate::{output, Failure};

pub(crate) fn plugin(command: PluginCommand) -> Result<ExitCode, Failure> {
    match command {
        PluginCommand::Add(args) => add(args),
        PluginCommand::List(args) => list(args),
        PluginCommand::Show(args) => show(args),
        PluginCommand::Remove(args) => remove(args),
    }
}

fn add(args: PluginAddArgs) -> Result<ExitCode, Failure> {
    let file = args.file.display().to_string();
    let wasm: Arc<[u8]> = crate::files::read_component(&args.file)?.into();
    let name = match &args.name {
        Some(n) => n.clone(),
        None => args.file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
    };
    plugin_ref::check_name(&name).map_err(|e| {
        Failure::usage(if args.name.is_some() { format!("--name: {e}") } else { format!("{e}; give one with --name") })
    })?;
    if let Some(v) = &args.version {
        plugin_ref::check_version(v).map_err(|e| Failure::usage(format!("--version: {e}")))?;
    }
    let rt = crate::setup::async_runtime()?;
    let app = rt.block_on(args.host.app(tether_runtime::LeaseConfig::default(), true))?;
    if !args.json {
        eprintln!("checking and compiling {file} ({}) ...", output::bytes(wasm.len() as u64));
    }
    let deploy = Deploy { wasm, origin: file.clone(), name, version: args.version.clone() };
    let Deployed { record, added, compiled_in: compiled } =
        rt.block_on(app.deploy(deploy, output::now_us())).map_err(|e| match e {
            AppError::NoVersion { .. } => {
                Failure::usage(format!("{file}: give its version with --version (for example --version 1.0.0)"))
            }
            other => other.into(),
        })?;
    if args.json {
        let mut v = json!(record);
        v["added"] = json!(added == PluginAdded::Added);
        v["compile_ms"] = json!(compiled.as_millis() as u64);
        println!("{}", crate::output::json(&v));
        return Ok(ExitCode::SUCCESS);
    }
    match added {
        PluginAdded::Added => println!(
            "added {} ({}, {}, sha256:{}); checked and compiled in {:.1?}",
            record.reference(),
            record.world,
            output::bytes(record.size),
            record.digest,
            compiled
        ),
        PluginAdded::AlreadyPresent => {
            println!("{} is already deployed with this digest; nothing changed", record.reference())
        }
    }
    println!("use it in a workflow as: component = \"{}\"", record.reference());
    Ok(ExitCode::SUCCESS)
}

fn list(args: PluginListArgs) -> Result<ExitCode, Failure> {
    let plugins = crate::setup::async_runtime()?
        .block_on(async { Ok::<_, Failure>(args.db.reader().await?.plugins(None).await?) })?;
    print_records(&plugins, args.json);
    Ok(ExitCode::SUCCESS)
}

fn show(args: PluginShowArgs) -> Result<ExitCode, Failure> {
    let (name, version) = match plugin_ref::split(&args.plugin) {
        Some(_) => plugin_ref::parse(&args.plugin).map(|(n, v)| (n, Some(v))),
        None => plugin_ref::check_name(&args.plugin).map(|()| (args.plugin.as_str(), None)),
    }
    .map_err(Failure::usage)?;
    let mut plugins = crate::setup::async_runtime()?
        .block_on(async { Ok::<_, Failure>(args.db.reader().await?.plugins(Some(name)).await?) })?;
    plugins.retain(|p| version.is_none_or(|v| p.version == v));
    if plugins.is_empty() {
        return Err(Failure::usage(format!(
            "no plugin {} in this host's store; `tether plugin list` shows what is deployed",
            args.plugin
        )));
    }
    if args.json {
        println!("{}", crate::output::json(&plugins));
        return Ok(ExitCode::SUCCESS);
    }
    for (i, p) in plugins.iter().enumerate() {
        if i > 0 {
            println!();
        }
        println!("plugin:   {}", p.reference());
        println!("world:    {}", p.world);
        println!("size:     {} ({} bytes)", output::bytes(p.size), p.size);
        println!("sha256:   {}", p.digest);
        println!("added:    {}", output::utc(p.added_us));
        if let Some(producers) = p.metadata["producers"].as_object() {
            for (field, entries) in producers {
                let list: Vec<&str> = entries.as_array().into_iter().flatten().filter_map(|e| e.as_str()).collect();
                println!("{:<9} {}", format!("{field}:"), output::sanitize(&list.join(", ")));
            }
        }
        for field in ["version", "description"] {
            if let Some(text) = p.metadata[field].as_str() {
                println!("{:<9} {}", format!("{field}:"), output::sanitize(text));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn remove(args: PluginRemoveArgs) -> Result<ExitCode, Failure> {
    let (name, version) = plugin_ref::parse(&args.plugin).map_err(Failure::usage)?;
    let removed = crate::setup::async_runtime()?
        .block_on(async { Ok::<_, Failure>(args.db.reader().await?.remove_plugin(name, version).await?) })?;
    if args.json {
        let doc = serde_json::json!({"removed": removed.reference(), "digest": removed.digest});
        println!("{}", crate::output::json(&doc));
    } else {
        println!("removed {} (sha256:{})", removed.reference(), removed.digest);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_records(plugins: &[PluginRecord], json: bool) {
    if json {
        println!("{}", crate::output::json(plugins));
        return;
    }
    if plugins.is_empty() {
        println!("no plugins deployed; add one with `tether plugin add FILE.wasm --version V`");
        return;
    }
    println!("{:<32} {:<12} {:>9}  {:<14} ADDED", "PLUGIN", "WORLD", "SIZE", "DIGEST");
    for p in plugins {
        println!(
            "{:<32} {:<12} {:>9}  {:<14} {}",
            p.reference(),
            p.world,
            output::bytes(p.size),
            format!("{}…", &p.digest[..12.min(p.digest.len())]),
            output::utc(p.added_us)
        );
    }
}
