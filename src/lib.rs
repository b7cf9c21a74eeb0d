//! wfe: a git-native workflow runner.
//!
//! A workflow is a [`template`]: a DAG of phases validated before anything
//! runs. Each run of a template lives in the repository as a chain of
//! checkpoint commits under `refs/wfe/runs/<id>`, written by the [`store`].
//! The [`engine`] schedules phases and turns every state change into one
//! checkpoint; [`exec`] runs a single script attempt and [`agent`] a single
//! agent attempt, talking to models through [`provider`]. [`artifact`] finds
//! and compiles the schemas every hand-off is validated against; [`index`]
//! keeps a tantivy search index derived from the runs' refs; [`schemas`]
//! lists the JSON Schemas generated from wfe's own types. Only [`cli`]
//! and [`web`] talk to people: everything below it takes values and returns typed
//! results.
//!
//! # Layers
//!
//! Modules import one way only, from the top of this list down; modules
//! on one line never import each other. `layering_tests.rs` holds the same
//! table and fails when an import goes back up.
//!
//! 1. [`cli`], then [`web`] (the web view `wfe serve` starts): the edge
//!    that talks to people.
//! 2. [`index`], [`schemas`], [`report`]: the search index over runs, the
//!    JSON Schemas of wfe's files, and a run's reports for CI hosts (log
//!    groups, job summary, annotations, JUnit); all read the engine's types.
//! 3. [`engine`]: runs, checkpoints, control requests.
//! 4. [`exec`], [`agent`]: one attempt of a script or an agent phase.
//! 5. [`provider`]: models behind one trait.
//! 6. [`template`], then [`artifact`], [`store`] and [`budget`]: the
//!    template format, schemas and documents, storage, spending limits. Every layer above may use them; they
//!    use only the leaves (and `template` uses `artifact`).
//! 7. Leaves: [`attempt`] (an attempt's outcome, errors and log; it uses
//!    [`time`] and [`secret`]), then [`process`] (the one process
//!    supervisor), [`retry`] (durations, retry policy, backoff), [`secret`]
//!    (the masker of secret values), [`time`], [`bounded`] (size-limited
//!    reads of regular files) and [`strict`] (JSON and YAML without
//!    duplicate keys), which import nothing from wfe.

pub mod agent;
pub mod artifact;
pub mod attempt;
pub mod bounded;
pub mod budget;
pub mod cli;
pub mod engine;
pub mod exec;
pub mod index;
#[cfg(test)]
mod layering_tests;
pub mod process;
pub mod provider;
pub mod report;
pub mod retry;
pub mod schemas;
pub mod secret;
pub mod store;
pub mod strict;
pub mod template;
#[cfg(any(test, feature = "testing"))]
#[doc(hidden)]
pub mod testing;
pub mod time;
pub mod web;
