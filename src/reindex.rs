//! `boardroom reindex`: rebuilds the board index from the homeserver alone — the rooms the
//! bot has joined and their current state — so that a lost database loses no board.

use ruma::{OwnedRoomId, api::client::membership::joined_rooms, events::AnyStateEvent, serde::Raw};

use crate::{
    config::Settings,
    error::Result,
    homeserver::{Auth, HomeserverClient, RetryPolicy},
    process::index::{
        Indexed, apply_room_state, fetch_state, index_members_from_state, tombstone_target,
    },
    store::Store,
};

/// What a rebuild found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Rooms the bot is in.
    pub rooms: usize,
    /// Boards indexed.
    pub boards: usize,
    /// Board rooms indexed.
    pub board_rooms: usize,
}

/// Rebuilds the board index. `progress(done, total)` is called as rooms are read.
pub async fn reindex(
    settings: &Settings,
    mut progress: impl FnMut(usize, usize),
) -> Result<Summary> {
    let store = Store::open(&settings.raw.database.path)?;
    let client = HomeserverClient::new(
        &settings.homeserver_url,
        Auth::Appservice(settings.as_token.clone()),
    )?
    .with_retry(RetryPolicy::SHORT);
    let rooms = client.send(joined_rooms::v3::Request::new(), None).await?.joined_rooms;
    let total = rooms.len();
    progress(0, total);
    let mut states: Vec<(OwnedRoomId, Vec<Raw<AnyStateEvent>>)> = Vec::with_capacity(total);
    for (i, room) in rooms.into_iter().enumerate() {
        let state = fetch_state(&client, &room).await?;
        states.push((room, state));
        progress(i + 1, total);
    }
    store.clear_board_index()?;
    let mut summary = Summary { rooms: total, ..Summary::default() };
    let mut replaced = Vec::new();
    for (room, state) in &states {
        match apply_room_state(&store, room, state)? {
            Indexed::Board(_) => summary.boards += 1,
            Indexed::Room(_) => summary.board_rooms += 1,
            Indexed::Replaced { by, record } => replaced.push((by, record)),
            Indexed::Nothing => {}
        }
    }
    // An upgraded board room whose replacement carries no board state of its own (the bot
    // may lack power there): the old room's tombstone says where the board room went.
    // Follow chains of upgrades to the live room.
    for (mut by, record) in replaced {
        let mut hops = 0;
        while let Some((_, state)) = states.iter().find(|(r, _)| *r == by)
            && let Some(next) =
                state.iter().filter_map(|r| r.deserialize().ok()).find_map(|e| tombstone_target(&e))
            && hops < 64
        {
            by = next;
            hops += 1;
        }
        let Some((_, state)) = states.iter().find(|(r, _)| *r == by) else { continue };
        if store.room(&by)?.is_none() {
            store.put_room(&by, &record)?;
            index_members_from_state(&store, &by, state)?;
            summary.board_rooms += 1;
        }
    }
    Ok(summary)
}
