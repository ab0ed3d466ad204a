//! Boards: the operations ([`ops`]: board commands, room upgrades, the room-state guard)
//! and the index of the rooms' state ([`index`]). The records and state events are in
//! [`crate::domain::board`].

pub mod index;
pub mod ops;
