//! One file per command; groups are folders.

pub(super) mod accept;
pub(super) mod approve;
pub(super) mod auto;
pub(super) mod cancel;
pub(super) mod comment;
pub(super) mod r#continue;
pub(super) mod demo;
pub(super) mod diff;
pub(super) mod edit;
pub(super) mod index;
pub(super) mod init;
pub(super) mod list;
pub(super) mod log;
pub(super) mod pause;
pub(super) mod provider;
pub(super) mod resume;
pub(super) mod retry;
pub(super) mod rollback;
pub(super) mod run;
pub(super) mod schema;
pub(super) mod search;
pub(super) mod show;
pub(super) mod skip;
pub(super) mod status;
pub(super) mod template;
pub(super) mod undo;
