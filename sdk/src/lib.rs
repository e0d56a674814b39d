//! Write [tether](https://example.invalid/tether) steps and tools in Rust.
//!
//! tether runs each workflow step and each agent tool as a sandboxed WebAssembly
//! component. This crate hides the component bindings: you write a plain Rust type with
//! serde-typed input and output, and one macro exports it.
//!
//! Enable exactly one feature: `step` for a workflow step, `tool` for a tool.
//!
//! # A step
//! ```ignore
//! use serde::{Deserialize, Serialize};
//! use tether_sdk::{Failure, Step};
//!
//! #[derive(Deserialize)]
//! struct Ticket { message: String, email: String }
//!
//! #[derive(Serialize)]
//! struct Triage { category: &'static str, plan: Option<String> }
//!
//! #[derive(Serialize)]
//! struct Lookup<'a> { email: &'a str }
//!
//! #[derive(Deserialize)]
//! struct Customer { plan: String }
//!
//! struct Classify;
//!
//! impl Step for Classify {
//!     type Input = Ticket;
//!     type Output = Triage;
//!
//!     fn run(ticket: Ticket) -> Result<Triage, Failure> {
//!         tether_sdk::info(&format!("classifying {} bytes", ticket.message.len()));
//!         let category = if ticket.message.contains("refund") { "billing" } else { "general" };
//!         // Only tools granted to this step in the workflow can be called.
//!         let customer: Customer =
//!             tether_sdk::call_tool("customer-lookup", &Lookup { email: &ticket.email })?;
//!         tether_sdk::report_usage("tokens", 42.0);
//!         Ok(Triage { category, plan: Some(customer.plan) })
//!     }
//! }
//!
//! tether_sdk::export_step!(Classify);
//! ```
//!
//! # A tool
//! ```ignore
//! use serde::{Deserialize, Serialize};
//! use tether_sdk::{Descriptor, Effect, Failure, Tool};
//!
//! #[derive(Deserialize)]
//! struct Query { email: String }
//!
//! #[derive(Serialize)]
//! struct Customer { plan: String }
//!
//! struct CustomerLookup;
//!
//! impl Tool for CustomerLookup {
//!     type Input = Query;
//!     type Output = Customer;
//!
//!     fn describe() -> Descriptor {
//!         Descriptor::new("customer-lookup", "Finds a customer by email.", Effect::ReadOnly)
//!     }
//!
//!     fn call(query: Query) -> Result<Customer, Failure> {
//!         if query.email.ends_with("@example.com") {
//!             Ok(Customer { plan: "enterprise".into() })
//!         } else {
//!             Err(Failure::not_found(format!("no customer with email {}", query.email)))
//!         }
//!     }
//! }
//!
//! tether_sdk::export_tool!(CustomerLookup);
//! ```
//!
//! Build with `cargo build --release --target wasm32-wasip2`; the `.wasm` file in
//! `target/wasm32-wasip2/release/` is the component to reference from a workflow.
#![deny(missing_docs)]

#[cfg(all(feature = "step", feature = "tool"))]
compile_error!("tether-sdk: enable exactly one of the features `step` and `tool`, not both");
#[cfg(not(any(feature = "step", feature = "tool")))]
compile_error!("tether-sdk: enable one of the features `step` (a workflow step) or `tool` (a tool)");

#[cfg(feature = "step")]
pub mod agent;
mod failure;
pub mod http;
mod log;
#[cfg(feature = "step")]
pub mod model;
#[cfg(feature = "step")]
mod step;
#[cfg(feature = "tool")]
mod tool;

pub use failure::{Failure, FailureKind};
pub use log::{debug, error, info, log, report_usage, warn, Level};
#[cfg(feature = "step")]
pub use step::{call_tool, call_tool_raw, describe_tool, Step};
#[cfg(feature = "tool")]
pub use log::idempotency_key;
#[cfg(feature = "tool")]
pub use tool::{Descriptor, Effect, Tool};

/// Generated component bindings. Not part of the stable API: use the items re-exported
/// at the crate root instead.
#[doc(hidden)]
pub mod bindings {
    #[cfg(feature = "step")]
    wit_bindgen::generate!({
        path: "../wit",
        world: "tether:plugin/step-plugin",
        default_bindings_module: "tether_sdk::bindings",
        pub_export_macro: true,
        export_macro_name: "export_step_bindings",
    });
    #[cfg(feature = "tool")]
    wit_bindgen::generate!({
        path: "../wit",
        world: "tether:plugin/tool-plugin",
        default_bindings_module: "tether_sdk::bindings",
        pub_export_macro: true,
        export_macro_name: "export_tool_bindings",
    });
}

/// Generated `wasi:http` client bindings, for [`http`]. Not part of the stable API.
#[doc(hidden)]
pub mod http_bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "tether:plugin/http-client",
        generate_all,
    });
}

/// Support code for the export macros. Not part of the stable API.
#[doc(hidden)]
pub mod __private {
    pub use serde_json;
}

#[cfg(feature = "step")]
#[doc(hidden)]
pub use step::__run as __run_step;
#[cfg(feature = "tool")]
#[doc(hidden)]
pub use tool::{__call as __call_tool, __describe as __describe_tool};
