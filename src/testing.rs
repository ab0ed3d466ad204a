//! What the integration tests and benchmarks reach that the library does not otherwise
//! export: handling one inbound entry as the dispatcher does, and a room's audience for
//! mention resolution.

pub use crate::{inbound::handler::handle, notifications::notify::RoomAudience};
