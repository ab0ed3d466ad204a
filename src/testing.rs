//! What the integration tests and benchmarks reach that the library does not otherwise
//! export: handling one inbound entry as the dispatcher does, a room's audience for
//! mention resolution, and running a chat command.

use ruma::{RoomId, UserId};

pub use crate::{inbound::handler::handle, notifications::notify::RoomAudience};

/// Runs the chat command `text`, sent by `sender` in `room`, as the dispatcher does
/// (parsing, the operation, rendering), and returns its reply's plain and HTML bodies;
/// nothing is sent. For benchmarks of commands that only read, such as `!task list`.
#[doc(hidden)]
pub async fn chat_command(
    ctx: &crate::context::Context,
    sender: &UserId,
    room: &RoomId,
    text: &str,
) -> Option<(String, String)> {
    let cmd = crate::commands::dispatch::ChatCommand {
        text,
        event_id: ruma::event_id!("$chat_command"),
        sender,
        room_id: room,
        thread: None,
        seq: 0,
    };
    crate::commands::dispatch::run(ctx, &cmd).await.reply.map(|r| (r.plain, r.html))
}
