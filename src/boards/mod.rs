//! Boards: the model ([`model`]: the `dev.boardroom.board` and `dev.boardroom.board_room`
//! state events, records, roles, power levels, validation), the operations ([`ops`]: board
//! commands, room upgrades, the room-state guard), and the index of the rooms' state
//! ([`index`]).

pub mod index;
pub mod model;
pub mod ops;
