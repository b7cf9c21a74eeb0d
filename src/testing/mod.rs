//! Test support shared by the unit tests, the integration tests and the
//! benches, so each helper exists once: a scripted fake model server
//! ([`llm`]), process-group liveness from `/proc` ([`process`]) and the
//! git CLI in a hermetic environment ([`git`]).
//!
//! Compiled for the crate's own tests and behind the `testing` feature,
//! which the integration tests and benches get through the package's
//! dev-dependency on itself. Not part of wfe's interface.

pub mod git;
pub mod llm;
pub mod process;
