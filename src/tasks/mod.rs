//! Tasks: the model ([`model`]: the `dev.boardroom.task` state event, the record, applying
//! a change, rendering the root) and the operations ([`ops`]: task commands, board
//! columns, comment indexing, the state guard, moving tasks on a room upgrade).

pub mod model;
pub mod ops;
