//! `tether inspect`.

use std::process::ExitCode;

use crate::cli::InspectArgs;
use crate::Failure;

pub(crate) fn inspect(args: InspectArgs) -> Result<ExitCode, Failure> {
    let runtime = args.host.runtime()?;
    let info = crate::setup::async_runtime()?
        .block_on(runtime.inspect(&args.component))
        .map_err(|e| Failure::usage(e.to_string()))?;
    if args.json {
        println!("{}", crate::output::json(&info));
        return Ok(ExitCode::SUCCESS);
    }
    println!("file:    {}", args.component.display());
    println!("size:    {} bytes", info.size);
    println!("sha256:  {}", info.sha256);
    println!("world:   {}", info.world.unwrap_or("none (fits neither the step nor the tool world)"));
    println!("imports:");
    for i in &info.imports {
        println!("  {i}");
    }
    println!("exports:");
    for e in &info.exports {
        println!("  {e}");
    }
    for (name, fit) in [("step", &info.step), ("tool", &info.tool)] {
        match &fit.problem {
            None => println!("fits the {name} world: yes"),
            Some(p) => println!("fits the {name} world: no, it {p}"),
        }
    }
    match &info.descriptor {
        Some(Ok(d)) => {
            println!("tool:    {} ({})", d.name, d.effect.as_str());
            println!("         {}", crate::output::sanitize(&d.description));
            println!("input schema:  {}", d.input_schema);
            println!("output schema: {}", d.output_schema);
        }
        Some(Err(e)) => println!("describe() failed: {}", crate::output::sanitize(e)),
        None => {}
    }
    Ok(ExitCode::SUCCESS)
}
