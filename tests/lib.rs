//! wfe's integration tests: one binary, one module per area, each driving
//! the real `wfe` binary in a hermetic temporary repository (see
//! [`common`]). Snapshots of human output live in `tests/snapshots/`.

// The crate's lints guard the library's API; a test fails by panicking,
// and its helpers' `pub` only reaches the other test modules.
#![allow(clippy::unwrap_used, unreachable_pub)]

mod common;

mod agent;
mod agent_setup;
mod artifacts;
mod bounds;
mod browser;
mod browser_controls;
mod budget;
mod ci;
mod control;
mod corpus;
mod crash;
mod diff;
mod examples;
mod fail_fast;
mod files;
mod fsck;
mod graph;
mod guard;
mod help;
mod hints;
mod init;
mod input;
mod input_bounds;
mod isolation;
mod live;
mod loop_agents;
mod loops;
mod matrix;
mod nested_loops;
mod packing;
mod phases;
mod pipelines;
mod provider;
mod provider_honesty;
mod recovery;
mod rollback;
mod run;
mod run_cache;
mod schemas;
mod search;
mod secrets;
mod sharing;
mod signals;
mod status;
mod steering;
mod web;
mod web_controls;
mod workers;
