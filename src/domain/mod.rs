//! The rules, free of HTTP and storage: what the bot does with what it sees
//! ([`bot`]), the requests it wants sent ([`action`]), and who is typing or online
//! ([`live`]).

pub mod action;
pub mod board;
pub mod bot;
pub mod inbox;
pub mod live;
pub mod mention;
pub mod task;

pub use action::Action;
