//! The rules, free of HTTP and storage: what the bot does with what it sees
//! ([`bot`]), the requests it wants sent ([`action`]), and who is typing or online
//! ([`live`]).

pub mod action;
pub mod bot;
pub mod live;

pub use action::Action;

/// What Boardroom's own event types start with:
/// [`crate::boards::model::BoardEventContent`],
/// [`crate::boards::model::BoardRoomEventContent`] and
/// [`crate::tasks::model::TaskEventContent`] (their `TYPE`).
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

    use super::EVENT_TYPE_PREFIX;
    use crate::boards::model as board;
    use crate::tasks::model as task;

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
