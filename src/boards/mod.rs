//! Boards: the operations ([`create`], [`members`], [`rooms`], [`info`]), each taking an
//! actor and checking its rights in [`access`], the one place that does; room upgrades
//! and the room-state guard ([`upgrade`]); and the index of the rooms' state ([`index`]).
//! The records and state events are in [`crate::domain::board`].

pub mod access;
pub mod create;
pub mod index;
pub mod info;
pub mod members;
pub mod rooms;
pub mod upgrade;
