//! One file per command; groups are folders.

pub mod accept;
pub mod approve;
pub mod auto;
pub mod cancel;
pub mod comment;
pub mod r#continue;
pub mod demo;
pub mod diff;
pub mod edit;
pub mod index;
pub mod init;
pub mod list;
pub mod log;
pub mod pause;
pub mod provider;
pub mod resume;
pub mod retry;
pub mod rollback;
pub mod run;
pub mod schema;
pub mod search;
pub mod show;
pub mod skip;
pub mod status;
pub mod template;
pub mod undo;
