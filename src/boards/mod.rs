//! Boards: the operations ([`create`], [`members`], [`rooms`], [`info`]), each taking an
//! actor and checking its rights in [`access`], the one place that does; speaking in a
//! board's rooms as an actor ([`messages`]); room upgrades
//! and the room-state guard ([`upgrade`]); and the index of the rooms' state ([`index`]).
//! The records and state events are in [`crate::domain::board`].

pub(crate) mod access;
pub(crate) mod create;
pub(crate) mod index;
pub(crate) mod info;
pub(crate) mod members;
pub(crate) mod messages;
pub(crate) mod rooms;
pub(crate) mod upgrade;
