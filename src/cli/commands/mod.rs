//! One file per command; groups are folders.

pub mod accept;
pub mod comment;
pub mod demo;
pub mod diff;
pub mod edit;
pub mod index;
pub mod init;
pub mod list;
pub mod log;
pub mod resume;
pub mod run;
pub mod schema;
pub mod search;
pub mod show;
pub mod status;
pub mod template;
