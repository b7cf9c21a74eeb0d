//! The git CLI as the store's tests run it: the shared hermetic helpers.

pub(crate) use crate::testing::git::{git, git_command};
