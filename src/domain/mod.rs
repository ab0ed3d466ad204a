//! Pure data and rules, free of HTTP and storage: Boardroom's records and state events
//! ([`board`], [`task`], [`inbox`]), who a message mentions ([`mention`]), what the bot
//! does with what it sees ([`bot`]), the requests it wants sent ([`action`]), who is
//! typing or online ([`live`]), the rules for text people give it to show ([`text`]), and the vocabulary of operations ([`op`]: who acts, what
//! they may do, and why a request is refused).

pub mod action;
pub mod board;
pub mod bot;
pub mod inbox;
pub mod live;
pub mod mention;
pub(crate) mod message;
pub mod op;
pub mod stream;
pub mod task;
pub mod text;

pub use action::Action;

/// What Boardroom's own event types start with:
/// [`board::BoardEventContent`], [`board::BoardRoomEventContent`] and
/// [`task::TaskEventContent`] (their `TYPE`).
pub const EVENT_TYPE_PREFIX: &str = "dev.boardroom.";

/// Now, in milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use ruma::events::StaticEventContent;

    use super::{EVENT_TYPE_PREFIX, board, task};

    #[test]
    fn every_boardroom_event_type_starts_with_the_prefix() {
        for ty in [
            board::BoardEventContent::TYPE,
            board::BoardRoomEventContent::TYPE,
            task::TaskEventContent::TYPE,
        ] {
            assert!(ty.starts_with(EVENT_TYPE_PREFIX), "{ty}");
        }
    }
}
