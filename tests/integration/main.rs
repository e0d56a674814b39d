//! Integration tests against real components built from plugins/ (see tests/build.rs).

mod budgets;
mod cache;
mod cli;
mod compensation;
mod demo;
mod durability;
mod failures;
mod flow;
mod governance;
mod grants;
mod inspect;
mod journal;
mod languages;
mod leases;
mod plugins;
mod replay;
mod retries;
mod support;
mod templates;
