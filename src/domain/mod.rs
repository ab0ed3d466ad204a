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

/// Now, in milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
