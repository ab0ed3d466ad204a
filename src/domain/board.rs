//! Boards: the Matrix state that defines them, the naming rules, and roles.
//!
//! A board is a space holding a `dev.boardroom.board` state event; each of its rooms holds
//! a `dev.boardroom.room` state event and is linked both ways (`m.space.child` in the
//! space, canonical `m.space.parent` in the room). Matrix room state is the source of
//! truth: Boardroom's index is rebuilt from it.

use std::collections::BTreeMap;

use ruma::{
    OwnedEventId, OwnedRoomId, OwnedUserId, RoomVersionId, UserId,
    events::{
        EmptyStateKey, macros::EventContent, room::power_levels::RoomPowerLevelsEventContent,
    },
    int,
};
use serde::{Deserialize, Serialize};

/// `dev.boardroom.board` in the space: what makes a space a board.
#[derive(Clone, Debug, Deserialize, Serialize, EventContent, PartialEq, Eq)]
#[ruma_event(type = "dev.boardroom.board", kind = State, state_key_type = EmptyStateKey)]
pub struct BoardEventContent {
    /// The board's slug.
    pub slug: String,
    /// Its display name.
    pub name: String,
    /// Who created it.
    pub created_by: OwnedUserId,
    /// The `!board create` event that created it (makes a resumed creation recognisable).
    pub created_by_event: OwnedEventId,
    /// The board's ordered columns.
    #[serde(default = "default_columns")]
    pub columns: Vec<String>,
}

/// What a board room is for.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RoomKind {
    /// Chat.
    Chat,
    /// The board's task threads.
    Tasks,
}

/// `dev.boardroom.room` in each board room.
#[derive(Clone, Debug, Deserialize, Serialize, EventContent, PartialEq, Eq)]
#[ruma_event(type = "dev.boardroom.room", kind = State, state_key_type = EmptyStateKey)]
pub struct BoardRoomEventContent {
    /// The board's slug.
    pub board: String,
    /// The room's short name (`general`, `tasks`, …).
    pub name: String,
    /// Chat or tasks.
    pub kind: RoomKind,
    /// Invite-only with explicit members (otherwise open to the board's members).
    #[serde(default)]
    pub private: bool,
}

/// A board as the index holds it.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct BoardRecord {
    /// Slug.
    pub slug: String,
    /// The space.
    pub space_id: OwnedRoomId,
    /// Display name.
    pub name: String,
    /// Creator.
    pub created_by: OwnedUserId,
    /// The creating command event.
    pub created_by_event: OwnedEventId,
    /// Users with implicit, unlimited power (room version 12 creators).
    #[serde(default)]
    pub creators: Vec<OwnedUserId>,
    /// `m.room.power_levels` `users` of the space.
    #[serde(default)]
    pub power_users: BTreeMap<OwnedUserId, i64>,
    /// `users_default` of the space.
    #[serde(default)]
    pub users_default: i64,
    /// The board's ordered columns.
    #[serde(default = "default_columns")]
    pub columns: Vec<String>,
}

/// A board room as the index holds it.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct RoomRecord {
    /// The board's slug.
    pub board: String,
    /// Short name.
    pub name: String,
    /// Chat or tasks.
    pub kind: RoomKind,
    /// Invite-only.
    pub private: bool,
    /// Set on an upgraded room Boardroom could not write its board state into yet (room
    /// version 12 gives the bot no power there until an admin does): the room it replaced,
    /// where a `tasks` room's tasks and their threads still are. Tasks cannot be created or
    /// changed until the move.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_move_from: Option<OwnedRoomId>,
}

impl RoomRecord {
    /// The room's `dev.boardroom.room` content, as the bot writes it.
    pub fn content(&self) -> BoardRoomEventContent {
        BoardRoomEventContent {
            board: self.board.clone(),
            name: self.name.clone(),
            kind: self.kind,
            private: self.private,
        }
    }
}

/// A member's role on a board.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Power level 0.
    Member,
    /// Power level 50 or more.
    Admin,
    /// Power level 100 or more, or a creator.
    Owner,
}

impl Role {
    /// The role's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }
}

/// Power in the board's space: a level, or unlimited for room version 12 creators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Power {
    /// An explicit power level.
    Level(i64),
    /// A creator (room version 12): above every level.
    Creator,
}

impl Power {
    /// At least `level`.
    pub fn at_least(self, level: i64) -> bool {
        match self {
            Power::Creator => true,
            Power::Level(l) => l >= level,
        }
    }
}

impl BoardRecord {
    /// A board for tests, named Launch: the default columns, made by `created_by`
    /// with no other creator or power.
    #[cfg(test)]
    pub(crate) fn example(slug: &str, space: &ruma::RoomId, created_by: &UserId) -> Self {
        Self {
            slug: slug.to_owned(),
            space_id: space.to_owned(),
            name: "Launch".into(),
            created_by: created_by.to_owned(),
            created_by_event: ruma::owned_event_id!("$create"),
            creators: vec![],
            power_users: Default::default(),
            users_default: 0,
            columns: default_columns(),
        }
    }

    /// `user`'s power in the space.
    pub fn power_of(&self, user: &UserId) -> Power {
        if self.creators.iter().any(|c| c == user) {
            return Power::Creator;
        }
        Power::Level(self.power_users.get(user).copied().unwrap_or(self.users_default))
    }

    /// `user`'s role.
    pub fn role_of(&self, user: &UserId) -> Role {
        match self.power_of(user) {
            Power::Creator => Role::Owner,
            Power::Level(l) if l >= 100 => Role::Owner,
            Power::Level(l) if l >= 50 => Role::Admin,
            Power::Level(_) => Role::Member,
        }
    }
}

/// Power needed to manage a board (invite, remove, columns).
pub const ADMIN_POWER: i64 = 50;

/// Checks a slug: lowercase letters, digits and `-`, 1 to 32 characters, starting with a
/// letter or digit.
pub fn validate_slug(slug: &str) -> Result<(), String> {
    validate_name(slug, "slug")
}

/// Checks a room's short name (same rules as a slug).
pub fn validate_room_name(name: &str) -> Result<(), String> {
    validate_name(name, "room name")
}

fn validate_name(s: &str, what: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 32 {
        return Err(format!(
            "a {what} has 1 to 32 characters; `{}` has {}",
            super::text::excerpt(s, 32),
            s.chars().count()
        ));
    }
    if let Some(c) = s.chars().find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '-')) {
        // An invisible or control character is named by its code point.
        let shown = if c.is_control() || super::text::is_invisible(c) {
            format!("U+{:04X}", u32::from(c))
        } else {
            c.to_string()
        };
        return Err(format!(
            "a {what} uses lowercase letters, digits and `-` only; `{s}` has `{shown}`"
        ));
    }
    if s.starts_with('-') {
        return Err(format!("a {what} starts with a letter or digit"));
    }
    Ok(())
}

/// The longest board name, in characters.
pub const MAX_BOARD_NAME_CHARS: usize = 128;

/// The longest topic of a board's space, in characters.
pub const MAX_TOPIC_CHARS: usize = 1_000;

/// Checks a board's display name: it shows something, has at most
/// [`MAX_BOARD_NAME_CHARS`] characters and no control characters. It names the board's
/// space and rooms and heads its listings.
pub fn validate_board_name(name: &str) -> Result<(), String> {
    super::text::validate_line(name, "a board name", MAX_BOARD_NAME_CHARS)
}

/// Checks the topic of a board's space: at most [`MAX_TOPIC_CHARS`] characters.
pub fn validate_topic(topic: &str) -> Result<(), String> {
    let n = topic.chars().count();
    if n > MAX_TOPIC_CHARS {
        return Err(format!("a topic has at most {MAX_TOPIC_CHARS} characters; this one has {n}"));
    }
    Ok(())
}

/// The alias localpart of a board's space: `<prefix><slug>`.
pub fn space_alias_localpart(prefix: &str, slug: &str) -> String {
    format!("{prefix}{slug}")
}

/// The alias localpart of a board room: `<prefix><slug>-<room>`.
pub fn room_alias_localpart(prefix: &str, slug: &str, room: &str) -> String {
    format!("{prefix}{slug}-{room}")
}

/// Whether rooms of `version` give their creators unlimited power (room version 12 on).
pub fn creators_privileged(version: &RoomVersionId) -> bool {
    version.rules().is_some_and(|r| r.authorization.explicitly_privilege_room_creators)
}

/// State only an owner may change in a board's rooms (power 100), and state an admin may
/// (50): the homeserver's defaults (Synapse's `events` map), kept because a
/// `power_level_content_override` replaces that map whole. `m.room.tombstone` keeps the
/// room version's own default where it has one (150 from version 12).
pub const PROTECTED_STATE: [(&str, i32); 8] = [
    ("m.room.power_levels", 100),
    ("m.room.history_visibility", 100),
    ("m.room.server_acl", 100),
    ("m.room.encryption", 100),
    ("m.room.tombstone", 100),
    ("m.room.name", 50),
    ("m.room.avatar", 50),
    ("m.room.canonical_alias", 50),
];

/// Power levels for a board's rooms. The bot creates every room. In room version 12 the
/// owner is an additional creator, so neither appears in `users`; before that both get 100.
/// Managing the board (invites, kicks, room links) needs [`ADMIN_POWER`].
pub fn power_levels(
    version: &RoomVersionId,
    bot: &UserId,
    owner: &UserId,
) -> Option<RoomPowerLevelsEventContent> {
    let rules = version.rules()?;
    let mut pl = RoomPowerLevelsEventContent::new(&rules.authorization);
    if !rules.authorization.explicitly_privilege_room_creators {
        pl.users.insert(bot.to_owned(), int!(100));
        pl.users.insert(owner.to_owned(), int!(100));
    }
    // The homeserver's own defaults for these, written out: an override's `events` replaces
    // the homeserver's map whole, and without them any admin (50) could change the power
    // levels, turn on encryption or open the history.
    for (ty, level) in PROTECTED_STATE {
        pl.events.entry(ty.into()).or_insert(level.into());
    }
    pl.invite = int!(50);
    pl.kick = int!(50);
    pl.ban = int!(50);
    pl.redact = int!(50);
    pl.state_default = int!(50);
    pl.events_default = int!(0);
    pl.users_default = int!(0);
    Some(pl)
}

/// The default columns of a board.
pub const DEFAULT_COLUMNS: [&str; 4] = ["todo", "doing", "review", "done"];

/// The default columns, owned.
pub fn default_columns() -> Vec<String> {
    DEFAULT_COLUMNS.iter().map(|c| (*c).to_owned()).collect()
}

/// Board columns from `a,b,…`: trimmed, lowercase, each a valid name, none twice, at
/// least one. The error says what is wrong.
pub fn columns_from(text: &str) -> Result<Vec<String>, String> {
    let columns: Vec<String> =
        text.split(',').map(|c| c.trim().to_lowercase()).filter(|c| !c.is_empty()).collect();
    if columns.is_empty() {
        return Err("name the columns, separated by commas".into());
    }
    for c in &columns {
        validate_room_name(c).map_err(|e| e.replace("room name", "column"))?;
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = columns.iter().find(|c| !seen.insert(c.as_str())) {
        return Err(format!("the column {dup} is listed twice"));
    }
    Ok(columns)
}

/// Whether `columns` are board columns as [`columns_from`] would give them.
pub fn valid_columns(columns: &[String]) -> Result<(), String> {
    match columns_from(&columns.join(",")) {
        Ok(c) if c == columns => Ok(()),
        Ok(_) => Err("columns are lowercase names without commas".into()),
        Err(why) => Err(why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert!(validate_slug("launch-2026").is_ok());
        assert!(validate_slug("a").is_ok());
        assert!(validate_slug("").is_err());
        assert!(validate_slug("Launch").is_err());
        assert!(validate_slug("a_b").is_err());
        assert!(validate_slug("-x").is_err());
        assert!(validate_slug(&"x".repeat(33)).is_err());
        assert!(validate_slug(&"x".repeat(32)).is_ok());
    }

    #[test]
    fn roles_from_power_and_creators() {
        let mut b = BoardRecord {
            slug: "s".into(),
            space_id: ruma::owned_room_id!("!s:x"),
            name: "S".into(),
            created_by: ruma::owned_user_id!("@o:x"),
            created_by_event: ruma::owned_event_id!("$e"),
            creators: vec![ruma::owned_user_id!("@o:x")],
            power_users: BTreeMap::new(),
            users_default: 0,
            columns: default_columns(),
        };
        b.power_users.insert(ruma::owned_user_id!("@a:x"), 50);
        assert_eq!(b.role_of(ruma::user_id!("@o:x")), Role::Owner);
        assert_eq!(b.role_of(ruma::user_id!("@a:x")), Role::Admin);
        assert_eq!(b.role_of(ruma::user_id!("@m:x")), Role::Member);
        assert!(b.power_of(ruma::user_id!("@o:x")).at_least(1_000_000));
        assert!(!b.power_of(ruma::user_id!("@m:x")).at_least(ADMIN_POWER));
    }

    #[test]
    fn v12_power_levels_leave_creators_out() {
        let bot = ruma::user_id!("@bot:x");
        let owner = ruma::user_id!("@o:x");
        let v12 = power_levels(&RoomVersionId::V12, bot, owner).expect("v12");
        assert!(v12.users.is_empty());
        let v11 = power_levels(&RoomVersionId::V11, bot, owner).expect("v11");
        assert_eq!(v11.users.get(owner), Some(&int!(100)));
        assert!(creators_privileged(&RoomVersionId::V12));
        for pl in [&v12, &v11] {
            let level = |ty: &str| pl.events.get(&ty.into()).copied();
            assert_eq!(level("m.room.power_levels"), Some(int!(100)));
            assert_eq!(level("m.room.encryption"), Some(int!(100)));
            assert_eq!(level("m.room.history_visibility"), Some(int!(100)));
            assert_eq!(level("m.room.name"), Some(int!(50)));
        }
        assert_eq!(v12.events.get(&"m.room.tombstone".into()), Some(&int!(150)));
        assert_eq!(v11.events.get(&"m.room.tombstone".into()), Some(&int!(100)));
        assert!(!creators_privileged(&RoomVersionId::V11));
    }
}
