//! Integration tests against real components built from plugins/ (see tests/build.rs).

mod backup;
mod budgets;
mod cache;
mod chaos;
mod cli;
mod compensation;
mod containment;
mod crash_flows;
mod demo;
mod durability;
mod examples_crash;
mod failures;
mod first_open;
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
mod verify;
