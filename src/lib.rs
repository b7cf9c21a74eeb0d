//! wfe: a git-native workflow runner.
//!
//! A workflow is a [`template`]: a DAG of phases validated before anything
//! runs. Each run of a template lives in the repository as a chain of
//! checkpoint commits under `refs/wfe/runs/<id>`, written by the [`store`].
//! The [`engine`] schedules phases and turns every state change into one
//! checkpoint; [`exec`] runs a single phase attempt. [`artifact`] finds and
//! compiles the schemas every hand-off is validated against; [`index`] keeps
//! a tantivy search index derived from the runs' refs; [`schemas`] lists the
//! JSON Schemas generated from wfe's own types. Only [`cli`] talks to
//! people: everything below it takes values and returns typed results.

pub mod agent;
pub mod artifact;
pub mod cli;
pub mod engine;
pub mod exec;
pub mod index;
pub mod provider;
pub mod schemas;
pub mod store;
pub mod template;
#[cfg(any(test, feature = "testing"))]
#[doc(hidden)]
pub mod testing;
pub mod time;
