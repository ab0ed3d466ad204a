//! Tasks: the operations ([`ops`]: task commands, board columns, comment indexing, the
//! state guard, moving tasks on a room upgrade) and rendering ([`render`]). The record and
//! the state event are in [`crate::domain::task`].

pub mod ops;
pub mod render;
