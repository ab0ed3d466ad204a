//! Property tests against a real Synapse: what an API caller may see.
//!
//! A world is generated: two or three boards, each created by one of four Matrix users,
//! the others on it (joined), invited only, or not on it; open rooms each joined or not;
//! up to two private rooms per board, with members joined or only invited; tasks with
//! labels and columns, some commented on by a member; one message per room, marked with a token of its own
//! (`MK-m-<board>-<room>-0`) and sometimes mentioning one of the room's members; someone
//! typing in some rooms; three API clients with random `boards` scopes (one `"*"`), each
//! with a virtual user of its own, which joins some boards and private rooms; then,
//! sometimes, a member removed from a board, and the clients' scopes changed with
//! Boardroom restarted. It is built on Synapse and Boardroom, and many random queries
//! (caller × endpoint × board × room or task; also a client naming another client's
//! virtual user) run against it, each checked against a model worked out from the
//! generated membership: an allowed query answers 200 with exactly the expected items, a
//! refused one the documented refusal, and no answer carries a marker, or a private room's
//! id, of something the caller may not see. A live stream query also sends a message in a
//! picked room, then one in `general`, and checks what the open stream carries. A run
//! builds [`WORLDS`] worlds, [`CASES`] queries each, and prints its seed
//! (`BOARDROOM_PROPS_SEED` replays it) and its counts per endpoint.

use std::{
    cell::RefCell,
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use proptest::{
    prelude::*,
    strategy::ValueTree,
    test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner},
};
use ruma::{OwnedRoomId, OwnedUserId, RoomId, events::room::member::MembershipState};
use serde_json::{Value, json};

use crate::harness::{SERVER_NAME, Stack};

/// The Matrix users who may be on boards; a fifth, [`OUTSIDER`], is on none.
const USERS: [&str; 4] = ["ann", "ben", "cat", "dan"];
const OUTSIDER: &str = "eve";
/// API clients, `c0`…, each with the virtual user `v0`…; the last one's scope is `"*"`.
const CLIENTS: usize = 3;
/// A slug no board has.
const NOPE: &str = "nope";
const LABELS: [&str; 2] = ["red", "blue"];
const STATUSES: [&str; 2] = ["todo", "doing"];
/// Room names a query may name: the open rooms, the private ones, and one never made.
const ROOM_NAMES: [&str; 5] = ["general", "tasks", "p0", "p1", "nowhere"];
/// Prefixes typed into mention autocomplete.
const PREFIXES: [&str; 9] = ["a", "b", "be", "@c", "DAN", "e", "boardroom", "boardroom_v1", "x"];
/// Worlds built in a run, and queries run on each.
const WORLDS: usize = 3;
const CASES: u32 = 256;

// ---------------------------------------------------------------------------------------
// The generated world.

/// One private room as generated: who creates it (a pick among the board's joined
/// users), who is invited, and which invitees join.
#[derive(Debug, Clone)]
struct PrivateGen {
    creator: usize,
    invite: [bool; 4],
    join: [bool; 4],
    vinvite: [bool; CLIENTS],
    vjoin: [bool; CLIENTS],
}

/// What happens in one room: a pick of its sender, of whom the message mentions, of who
/// types there.
#[derive(Debug, Clone)]
struct TrafficGen {
    sender: usize,
    mention: Option<usize>,
    typist: Option<usize>,
}

#[derive(Debug, Clone)]
struct BoardGen {
    creator: usize,
    /// Per user: 0 not on the board, 1 invited only, else joined.
    on_board: [u8; 4],
    general: [bool; 4],
    tasks_room: [bool; 4],
    /// Per client: its virtual user joins the board (when in scope).
    vjoin: [bool; CLIENTS],
    private: Vec<PrivateGen>,
    /// Per task: its label and column.
    /// Per task: its label, its column, and a pick of a member who comments on it.
    tasks: Vec<(usize, usize, Option<usize>)>,
    /// general, tasks, p0, p1.
    traffic: [TrafficGen; 4],
}

#[derive(Debug, Clone)]
struct WorldGen {
    boards: Vec<BoardGen>,
    /// Scopes of the clients before the last: which boards, and whether `nope` too.
    scopes: [(u8, bool); CLIENTS - 1],
    /// Once built, a member removed from a board: picks of the board and the member.
    remove: Option<(usize, usize)>,
    /// Once built, the clients' scopes changed (as `scopes`) and Boardroom restarted.
    rescope: Option<[(u8, bool); CLIENTS - 1]>,
}

fn private_gen() -> impl Strategy<Value = PrivateGen> + Clone {
    (
        0..4usize,
        prop::array::uniform4(any::<bool>()),
        prop::array::uniform4(prop::bool::weighted(0.75)),
        prop::array::uniform3(any::<bool>()),
        prop::array::uniform3(prop::bool::weighted(0.6)),
    )
        .prop_map(|(creator, invite, join, vinvite, vjoin)| PrivateGen {
            creator,
            invite,
            join,
            vinvite,
            vjoin,
        })
}

fn traffic_gen() -> impl Strategy<Value = TrafficGen> + Clone {
    (0..8usize, prop::option::weighted(0.8, 0..8usize), prop::option::weighted(0.5, 0..8usize))
        .prop_map(|(sender, mention, typist)| TrafficGen { sender, mention, typist })
}

fn board_gen() -> impl Strategy<Value = BoardGen> + Clone {
    (
        0..4usize,
        prop::array::uniform4(0..5u8),
        prop::array::uniform4(prop::bool::weighted(0.6)),
        prop::array::uniform4(prop::bool::weighted(0.5)),
        prop::array::uniform3(prop::bool::weighted(0.6)),
        prop::collection::vec(private_gen(), 0..=2),
        prop::collection::vec(
            (0..2usize, 0..2usize, prop::option::weighted(0.6, 0..4usize)),
            1..=3,
        ),
        prop::array::uniform4(traffic_gen()),
    )
        .prop_map(
            |(creator, on_board, general, tasks_room, vjoin, private, tasks, traffic)| BoardGen {
                creator,
                on_board,
                general,
                tasks_room,
                vjoin,
                private,
                tasks,
                traffic,
            },
        )
}

fn world_gen() -> impl Strategy<Value = WorldGen> {
    (
        prop::collection::vec(board_gen(), 2..=3),
        prop::array::uniform2((0..8u8, prop::bool::weighted(0.3))),
        prop::option::weighted(0.5, (0..3usize, 0..4usize)),
        prop::option::weighted(0.4, prop::array::uniform2((0..8u8, prop::bool::weighted(0.3)))),
    )
        .prop_map(|(boards, scopes, remove, rescope)| WorldGen {
            boards,
            scopes,
            remove,
            rescope,
        })
}

// ---------------------------------------------------------------------------------------
// The model: the world as built.

/// A user: a Matrix user (an index of [`USERS`], or 4 for [`OUTSIDER`]) or the virtual
/// user of a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Who {
    M(usize),
    V(usize),
}

impl Who {
    fn localpart(self) -> String {
        match self {
            Who::M(i) => USERS.get(i).copied().unwrap_or(OUTSIDER).to_owned(),
            Who::V(c) => format!("boardroom_v{c}"),
        }
    }

    fn user_id(self) -> String {
        format!("@{}:{SERVER_NAME}", self.localpart())
    }
}

#[derive(Debug, Clone)]
enum Scope {
    All,
    Only(BTreeSet<String>),
}

impl Scope {
    fn covers(&self, slug: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Only(s) => s.contains(slug),
        }
    }

    fn toml(&self) -> String {
        match self {
            Scope::All => "[\"*\"]".to_owned(),
            Scope::Only(s) => {
                let names: Vec<String> = s.iter().map(|b| format!("\"{b}\"")).collect();
                format!("[{}]", names.join(", "))
            }
        }
    }
}

#[derive(Debug, Clone)]
struct RoomM {
    name: String,
    private: bool,
    id: OwnedRoomId,
    /// Its messages' markers and event ids.
    messages: Vec<(String, String)>,
    typist: Option<Who>,
}

#[derive(Debug, Clone)]
struct TaskM {
    number: u64,
    label: &'static str,
    status: &'static str,
    marker: String,
    /// A comment's marker and event id.
    comment: Option<(String, String)>,
}

#[derive(Debug, Clone)]
struct BoardM {
    slug: String,
    creator: usize,
    space: OwnedRoomId,
    rooms: Vec<RoomM>,
    tasks: Vec<TaskM>,
}

/// An inbox entry the world made: a mention.
#[derive(Debug, Clone)]
struct EntryM {
    who: Who,
    board: usize,
    room: OwnedRoomId,
    event_id: String,
    marker: String,
    id: u64,
    read: bool,
}

#[derive(Debug)]
struct Model {
    boards: Vec<BoardM>,
    scopes: Vec<Scope>,
    /// Memberships in spaces and rooms (absent: none).
    mem: BTreeMap<(OwnedRoomId, Who), MembershipState>,
    entries: Vec<EntryM>,
}

/// Who calls the API.
#[derive(Debug, Clone, Copy)]
enum Caller {
    /// A Matrix user's own token.
    Matrix(usize),
    /// Client `client`'s token naming the virtual user `v<vuser>`.
    Client { client: usize, vuser: usize },
}

/// What the model says of a board for a caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Allowed,
    Forbidden,
    NotFound,
}

impl Model {
    fn ms(&self, room: &RoomId, who: Who) -> Option<&MembershipState> {
        self.mem.get(&(room.to_owned(), who))
    }

    fn joined(&self, room: &RoomId, who: Who) -> bool {
        self.ms(room, who) == Some(&MembershipState::Join)
    }

    fn in_room(&self, room: &RoomId, who: Who) -> bool {
        matches!(self.ms(room, who), Some(MembershipState::Join | MembershipState::Invite))
    }

    fn who(caller: Caller) -> Who {
        match caller {
            Caller::Matrix(u) => Who::M(u),
            Caller::Client { vuser, .. } => Who::V(vuser),
        }
    }

    /// Whether a client names a virtual user of another client (refused on every endpoint).
    fn foreign(caller: Caller) -> bool {
        matches!(caller, Caller::Client { client, vuser } if client != vuser)
    }

    fn slug(&self, board: Option<usize>) -> String {
        board.map_or_else(|| NOPE.to_owned(), |b| self.boards[b].slug.clone())
    }

    fn access(&self, caller: Caller, board: Option<usize>) -> Access {
        if Self::foreign(caller) {
            return Access::Forbidden;
        }
        match caller {
            Caller::Matrix(u) => match board {
                Some(b) if self.joined(&self.boards[b].space, Who::M(u)) => Access::Allowed,
                _ => Access::Forbidden,
            },
            Caller::Client { client, .. } => {
                if !self.scopes[client].covers(&self.slug(board)) {
                    Access::Forbidden
                } else if board.is_some() {
                    Access::Allowed
                } else {
                    Access::NotFound
                }
            }
        }
    }

    /// Whether `who` sees room `r` of board `b`: an open room always; a private one when
    /// joined, or (unless `strict`) invited.
    fn sees(&self, r: &RoomM, who: Who, strict: bool) -> bool {
        !r.private || if strict { self.joined(&r.id, who) } else { self.in_room(&r.id, who) }
    }

    /// The ids of the private rooms of every board `who` may not see.
    fn hidden_rooms(&self, who: Who, strict: bool) -> Vec<String> {
        let mut out = Vec::new();
        for board in &self.boards {
            for r in &board.rooms {
                if r.private && !self.sees(r, who, strict) {
                    out.push(r.id.to_string());
                }
            }
        }
        out
    }

    fn board_members(&self, b: usize, with_virtual: bool) -> BTreeSet<String> {
        let space = &self.boards[b].space;
        self.mem
            .iter()
            .filter(|((room, who), m)| {
                room == space
                    && **m == MembershipState::Join
                    && (with_virtual || matches!(who, Who::M(_)))
            })
            .map(|((_, who), _)| who.user_id())
            .collect()
    }

    /// What the caller may see of the entries: its own, of boards within a client's scope.
    fn entries_of(&self, caller: Caller) -> Vec<&EntryM> {
        let who = Self::who(caller);
        self.entries
            .iter()
            .filter(|e| e.who == who)
            .filter(|e| match caller {
                Caller::Matrix(_) => true,
                Caller::Client { client, .. } => {
                    self.scopes[client].covers(&self.boards[e.board].slug)
                }
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------
// The HTTP API.

struct Api {
    base: String,
    http: reqwest::Client,
    tokens: Vec<String>,
}

/// A client's token.
fn client_token(c: usize) -> String {
    format!("client-{c}-token")
}

impl Api {
    fn request(&self, method: &str, path: &str, caller: Caller) -> reqwest::RequestBuilder {
        let url = format!("{}{path}", self.base);
        let req = match method {
            "POST" => self.http.post(url),
            "PUT" => self.http.put(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.get(url),
        };
        match caller {
            Caller::Matrix(u) => req.bearer_auth(&self.tokens[u]),
            Caller::Client { client, vuser } => req
                .bearer_auth(client_token(client))
                .header("X-Boardroom-User", format!("v{vuser}")),
        }
    }

    /// The status and the raw body.
    async fn call(
        &self,
        method: &str,
        path: &str,
        caller: Caller,
        body: Option<Value>,
    ) -> (u16, String) {
        let mut req = self.request(method, path, caller);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("api request");
        (resp.status().as_u16(), resp.text().await.unwrap_or_default())
    }

    /// A call that must answer `want`; its body as JSON.
    async fn ok(
        &self,
        method: &str,
        path: &str,
        caller: Caller,
        body: Option<Value>,
        want: u16,
    ) -> Value {
        let (status, text) = self.call(method, path, caller, body).await;
        assert_eq!(status, want, "{method} {path} as {caller:?}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// Opens `/boards/{slug}/events`, replaying the whole log: the stream, or the
    /// refusal's status and body.
    async fn open(&self, slug: &str, caller: Caller) -> Result<Sse, (u16, String)> {
        let path = format!("/boards/{slug}/events?last_event_id=0");
        let resp = self.request("GET", &path, caller).send().await.expect("open the stream");
        let status = resp.status().as_u16();
        if status != 200 {
            return Err((status, resp.text().await.unwrap_or_default()));
        }
        Ok(Sse { resp, buf: String::new() })
    }

    /// [`Api::open`], read up to `ready`: the status, and the frames (or the refusal).
    async fn stream(&self, slug: &str, caller: Caller) -> (u16, String) {
        match self.open(slug, caller).await {
            Ok(mut sse) => (200, sse.replay().await),
            Err(refused) => refused,
        }
    }
}

/// A stream being read.
struct Sse {
    resp: reqwest::Response,
    buf: String,
}

impl Sse {
    /// The frames read until the first whole frame for which `done` holds (included);
    /// panics when none comes within 15 s.
    async fn until(&mut self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let mut at = 0;
            while let Some(end) = self.buf[at..].find("\n\n") {
                let frame = &self.buf[at..at + end + 2];
                at += end + 2;
                if done(frame) {
                    return self.buf.drain(..at).collect();
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.resp.chunk()).await {
                Ok(Ok(Some(chunk))) => self.buf.push_str(&String::from_utf8_lossy(&chunk)),
                other => panic!("the stream stopped before {what}: {other:?}; read {}", self.buf),
            }
        }
    }

    /// The replay and the snapshot, up to `ready` (included).
    async fn replay(&mut self) -> String {
        self.until("ready", |f| f.contains("\nevent: ready\n")).await
    }
}

/// The markers (`MK-…`) in `text`.
fn markers(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("MK-") {
        let tail = &rest[i..];
        let end = tail[3..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .map_or(tail.len(), |e| e + 3);
        out.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    out
}

/// The frames of a stream: `(event, data)`.
fn frames(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter_map(|block| {
            let mut event = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(e) = line.strip_prefix("event: ") {
                    event = Some(e.to_owned());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push_str(d);
                }
            }
            Some((event?, serde_json::from_str(&data).expect("data is JSON")))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Building the world on Synapse.

struct Built {
    stack: Stack,
    api: Api,
    model: Model,
    typing_set: Instant,
    /// Messages sent by live stream queries so far.
    live_sent: u64,
}

fn config(scopes: &[Scope]) -> String {
    let creators: Vec<String> = USERS.iter().map(|u| format!("\"@{u}:{SERVER_NAME}\"")).collect();
    let mut text = format!("[permissions]\nboard_creators = [{}]\n", creators.join(", "));
    for (c, scope) in scopes.iter().enumerate() {
        text.push_str(&format!(
            "[[api.clients]]\nname = \"c{c}\"\ntoken = \"{}\"\nboards = {}\n",
            client_token(c),
            scope.toml()
        ));
    }
    text
}

/// Polls until Boardroom's index holds every membership of the model (and no other of
/// the model's users in the model's rooms).
async fn settle(stack: &Stack, model: &Model) {
    let store = stack.boardroom.store();
    let mut rooms: BTreeSet<OwnedRoomId> = BTreeSet::new();
    for b in &model.boards {
        rooms.insert(b.space.clone());
        rooms.extend(b.rooms.iter().map(|r| r.id.clone()));
    }
    let everyone: Vec<Who> =
        (0..=USERS.len()).map(Who::M).chain((0..CLIENTS).map(Who::V)).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut wrong = Vec::new();
        for room in &rooms {
            for who in &everyone {
                let user = OwnedUserId::try_from(who.user_id()).expect("user id");
                let held = store.membership(room, &user).expect("membership");
                let want = model.ms(room, *who);
                let held = held.filter(|m| *m != MembershipState::Leave);
                if held.as_ref() != want {
                    wrong.push(format!("{who:?} in {room}: {held:?}, want {want:?}"));
                }
            }
        }
        if wrong.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "the index did not settle: {wrong:#?}");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

async fn set_typing(api: &Api, model: &Model) {
    for b in &model.boards {
        for r in &b.rooms {
            if let Some(Who::M(u)) = r.typist {
                let path = format!("/boards/{}/rooms/{}/typing", b.slug, r.name);
                let body = json!({ "typing": true, "timeout_ms": 120_000 });
                api.ok("PUT", &path, Caller::Matrix(u), Some(body), 200).await;
            }
        }
    }
}

/// The clients' scopes: those generated, then `"*"`.
fn scopes_of(slugs: &[String], generated: &[(u8, bool)]) -> Vec<Scope> {
    let mut scopes = Vec::new();
    for (mask, nope) in generated {
        let mut s: BTreeSet<String> = slugs
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, s)| s.clone())
            .collect();
        if *nope || s.is_empty() {
            s.insert(NOPE.to_owned());
        }
        scopes.push(Scope::Only(s));
    }
    scopes.push(Scope::All);
    scopes
}

async fn build(wg: &WorldGen) -> Built {
    let slugs: Vec<String> = (0..wg.boards.len()).map(|b| format!("b{b}")).collect();
    let scopes = scopes_of(&slugs, &wg.scopes);
    let stack = Stack::start(&config(&scopes)).await;
    let mut users = Vec::new();
    for name in USERS.iter().chain([&OUTSIDER]) {
        users.push(stack.synapse.register(name).await);
    }
    let api = Api {
        base: format!("http://{}/_boardroom/api/v1", stack.boardroom.settings.listen),
        http: reqwest::Client::new(),
        tokens: users.iter().map(|u| u.token.clone()).collect(),
    };
    // Each client names its own virtual user first: that user is the client's.
    for c in 0..CLIENTS {
        api.ok("GET", "/boards", Caller::Client { client: c, vuser: c }, None, 200).await;
    }
    let mut model = Model {
        boards: Vec::new(),
        scopes: scopes.clone(),
        mem: BTreeMap::new(),
        entries: Vec::new(),
    };

    // Boards, their members and their open rooms.
    for (b, g) in wg.boards.iter().enumerate() {
        let slug = slugs[b].clone();
        let creator = Caller::Matrix(g.creator);
        let made = api.ok("POST", "/boards", creator, Some(json!({ "slug": slug })), 201).await;
        let space: OwnedRoomId =
            made["space_id"].as_str().expect("space_id").try_into().expect("room id");
        let c = &users[g.creator];
        c.join(space.as_str()).await.expect("the creator joins the space");
        let mut rooms = Vec::new();
        for (name, private) in [("general", false), ("tasks", false)] {
            let id =
                c.join(&format!("#boardroom_{slug}-{name}:{SERVER_NAME}")).await.expect("join");
            model.mem.insert((id.clone(), Who::M(g.creator)), MembershipState::Join);
            rooms.push(RoomM {
                name: name.into(),
                private,
                id,
                messages: Vec::new(),
                typist: None,
            });
        }
        model.mem.insert((space.clone(), Who::M(g.creator)), MembershipState::Join);
        // The creator invites once Boardroom knows they joined.
        let deadline = Instant::now() + Duration::from_secs(15);
        let creator_id = OwnedUserId::try_from(Who::M(g.creator).user_id()).expect("user id");
        while !stack.boardroom.store().is_board_member(&slug, &creator_id).expect("read") {
            assert!(Instant::now() < deadline, "{creator_id} never indexed on {slug}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for u in 0..USERS.len() {
            if u == g.creator || g.on_board[u] == 0 {
                continue;
            }
            let path = format!("/boards/{slug}/members/@{}:{SERVER_NAME}", USERS[u]);
            api.ok("PUT", &path, creator, None, 200).await;
            if g.on_board[u] == 1 {
                model.mem.insert((space.clone(), Who::M(u)), MembershipState::Invite);
                continue;
            }
            users[u].join(space.as_str()).await.expect("join the space");
            model.mem.insert((space.clone(), Who::M(u)), MembershipState::Join);
            for (r, wants) in [g.general[u], g.tasks_room[u]].into_iter().enumerate() {
                if wants {
                    users[u].join(rooms[r].id.as_str()).await.expect("join an open room");
                    model.mem.insert((rooms[r].id.clone(), Who::M(u)), MembershipState::Join);
                }
            }
        }
        model.boards.push(BoardM { slug, creator: g.creator, space, rooms, tasks: Vec::new() });
    }
    // Virtual users join boards of their client's scope by reading `general` there.
    for (b, g) in wg.boards.iter().enumerate() {
        for (v, (scope, joins)) in scopes.iter().zip(g.vjoin).enumerate() {
            let board = &model.boards[b];
            if joins && scope.covers(&board.slug) {
                let path = format!("/boards/{}/rooms/general/messages", board.slug);
                api.ok("GET", &path, Caller::Client { client: v, vuser: v }, None, 200).await;
                let (space, general) = (board.space.clone(), board.rooms[0].id.clone());
                model.mem.insert((space, Who::V(v)), MembershipState::Join);
                model.mem.insert((general, Who::V(v)), MembershipState::Join);
            }
        }
    }
    settle(&stack, &model).await;

    // Private rooms.
    for (b, g) in wg.boards.iter().enumerate() {
        for (p, pg) in g.private.iter().enumerate() {
            let space = model.boards[b].space.clone();
            let joined: Vec<usize> =
                (0..USERS.len()).filter(|u| model.joined(&space, Who::M(*u))).collect();
            let creator = joined[pg.creator % joined.len()];
            let mut invitees: Vec<Who> = (0..USERS.len())
                .filter(|u| pg.invite[*u] && *u != creator && joined.contains(u))
                .map(Who::M)
                .collect();
            invitees.extend(
                (0..CLIENTS)
                    .filter(|v| pg.vinvite[*v] && model.joined(&space, Who::V(*v)))
                    .map(Who::V),
            );
            let name = format!("p{p}");
            let members: Vec<String> = invitees.iter().map(|w| w.user_id()).collect();
            let slug = model.boards[b].slug.clone();
            let made = api
                .ok(
                    "POST",
                    &format!("/boards/{slug}/rooms"),
                    Caller::Matrix(creator),
                    Some(json!({ "name": name, "private": true, "members": members })),
                    201,
                )
                .await;
            let id: OwnedRoomId =
                made["room_id"].as_str().expect("room_id").try_into().expect("room id");
            users[creator].join(id.as_str()).await.expect("the room's creator joins");
            model.mem.insert((id.clone(), Who::M(creator)), MembershipState::Join);
            for who in invitees {
                let join = match who {
                    Who::M(u) => pg.join[u],
                    Who::V(v) => pg.vjoin[v],
                };
                let state = if join { MembershipState::Join } else { MembershipState::Invite };
                model.mem.insert((id.clone(), who), state);
                if !join {
                    continue;
                }
                match who {
                    Who::M(u) => {
                        users[u].join(id.as_str()).await.expect("join a private room");
                    }
                    Who::V(v) => {
                        let path = format!("/boards/{slug}/rooms/{name}/messages");
                        api.ok("GET", &path, Caller::Client { client: v, vuser: v }, None, 200)
                            .await;
                    }
                }
            }
            model.boards[b].rooms.push(RoomM {
                name,
                private: true,
                id,
                messages: Vec::new(),
                typist: None,
            });
        }
    }
    settle(&stack, &model).await;

    // Tasks, some with a comment by a member (who joins `tasks` to write it), which
    // notifies the task's creator.
    let mut mentions = Vec::new();
    for (b, g) in wg.boards.iter().enumerate() {
        let slug = model.boards[b].slug.clone();
        for (i, (label, status, commenter)) in g.tasks.iter().enumerate() {
            let marker = format!("MK-t-{slug}-{}", i + 1);
            let body = json!({
                "title": format!("{marker} to do"),
                "labels": [LABELS[*label]],
                "status": STATUSES[*status],
            });
            let task = api
                .ok(
                    "POST",
                    &format!("/boards/{slug}/tasks"),
                    Caller::Matrix(g.creator),
                    Some(body),
                    201,
                )
                .await;
            let number = task["number"].as_u64().expect("number");
            let board = &model.boards[b];
            let joined: Vec<usize> =
                (0..USERS.len()).filter(|u| model.joined(&board.space, Who::M(*u))).collect();
            let comment = match commenter.map(|c| joined[c % joined.len()]) {
                Some(u) => {
                    let marker = format!("MK-c-{slug}-{number}");
                    let path = format!("/boards/{slug}/tasks/{number}/comments");
                    let body = json!({ "body": format!("{marker} noted") });
                    let sent = api.ok("POST", &path, Caller::Matrix(u), Some(body), 200).await;
                    let event_id = sent["event_id"].as_str().expect("event_id").to_owned();
                    let tasks_room = board.rooms[1].id.clone();
                    if u != g.creator {
                        let creator = Who::M(g.creator);
                        mentions.push((
                            creator,
                            b,
                            tasks_room.clone(),
                            event_id.clone(),
                            marker.clone(),
                        ));
                    }
                    model.mem.insert((tasks_room, Who::M(u)), MembershipState::Join);
                    Some((marker, event_id))
                }
                None => None,
            };
            model.boards[b].tasks.push(TaskM {
                number,
                label: LABELS[*label],
                status: STATUSES[*status],
                marker,
                comment,
            });
        }
    }
    settle(&stack, &model).await;

    // A message in each room (mentioning one of its joined members), someone typing.
    for (b, g) in wg.boards.iter().enumerate() {
        let slug = model.boards[b].slug.clone();
        for r in 0..model.boards[b].rooms.len() {
            let room = model.boards[b].rooms[r].clone();
            let traffic = &g.traffic[r];
            let present: Vec<Who> = (0..USERS.len())
                .map(Who::M)
                .chain((0..CLIENTS).map(Who::V))
                .filter(|w| model.joined(&room.id, *w))
                .collect();
            let speakers: Vec<usize> = present
                .iter()
                .filter_map(|w| match w {
                    Who::M(u) => Some(*u),
                    Who::V(_) => None,
                })
                .collect();
            let sender = speakers[traffic.sender % speakers.len()];
            let others: Vec<Who> =
                present.iter().copied().filter(|w| *w != Who::M(sender)).collect();
            let mention =
                traffic.mention.filter(|_| !others.is_empty()).map(|m| others[m % others.len()]);
            let marker = format!("MK-m-{slug}-{}-0", room.name);
            let text = match mention {
                Some(w) => format!("{marker} over to @{}", w.localpart()),
                None => format!("{marker} for everyone"),
            };
            let path = format!("/boards/{slug}/rooms/{}/messages", room.name);
            let sent = api
                .ok("POST", &path, Caller::Matrix(sender), Some(json!({ "body": text })), 200)
                .await;
            let event_id = sent["event_id"].as_str().expect("event_id").to_owned();
            if let Some(w) = mention {
                mentions.push((w, b, room.id.clone(), event_id.clone(), marker.clone()));
            }
            let typist = traffic.typist.map(|t| Who::M(speakers[t % speakers.len()]));
            let room = &mut model.boards[b].rooms[r];
            room.messages.push((marker, event_id));
            room.typist = typist;
        }
    }
    set_typing(&api, &model).await;
    let typing_set = Instant::now();

    // Boardroom has logged every message and filed every mention.
    let store = stack.boardroom.store();
    let deadline = Instant::now() + Duration::from_secs(30);
    for b in &model.boards {
        for r in &b.rooms {
            for (_, event_id) in &r.messages {
                loop {
                    let log = store.live_read(&b.slug, 0, 100_000).expect("the live log");
                    if format!("{log:?}").contains(event_id.as_str()) {
                        break;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "{event_id} never reached the log of {}",
                        b.slug
                    );
                    tokio::time::sleep(Duration::from_millis(150)).await;
                }
            }
        }
    }
    for (who, board, room, event_id, marker) in mentions {
        let caller = match who {
            Who::M(u) => Caller::Matrix(u),
            Who::V(v) => Caller::Client { client: v, vuser: v },
        };
        let id = loop {
            let page = api.ok("GET", "/notifications?limit=100", caller, None, 200).await;
            let found = page["notifications"]
                .as_array()
                .and_then(|a| a.iter().find(|n| n["event_id"] == event_id.as_str()))
                .and_then(|n| n["id"].as_u64());
            if let Some(id) = found {
                break id;
            }
            assert!(Instant::now() < deadline, "{who:?} was never notified of {event_id}");
            tokio::time::sleep(Duration::from_millis(150)).await;
        };
        model.entries.push(EntryM { who, board, room, event_id, marker, id, read: false });
    }
    let mut built = Built { stack, api, model, typing_set, live_sent: 0 };
    if let Some((b, pick)) = wg.remove {
        built.remove(b % wg.boards.len(), pick).await;
    }
    if let Some(rescope) = &wg.rescope {
        built.model.scopes = scopes_of(&slugs, rescope);
        let settings = &built.stack.boardroom.settings;
        let mut access = (*settings.access()).clone();
        for (c, scope) in built.model.scopes.iter().enumerate() {
            access.api_clients[c].boards = match scope {
                Scope::All => vec!["*".to_owned()],
                Scope::Only(s) => s.iter().cloned().collect(),
            };
        }
        settings.set_access(access);
        built.stack.restart_boardroom().await;
        // Typing is not stored: a restarted Boardroom knows of none until told again.
        set_typing(&built.api, &built.model).await;
        built.typing_set = Instant::now();
    }
    built
}

impl Built {
    /// The board's creator removes a member (a pick among the others who joined), who
    /// stops typing first: out of the board's space and its private rooms.
    async fn remove(&mut self, b: usize, pick: usize) {
        let board = &self.model.boards[b];
        let joined: Vec<usize> = (0..USERS.len())
            .filter(|u| *u != board.creator && self.model.joined(&board.space, Who::M(*u)))
            .collect();
        if joined.is_empty() {
            return;
        }
        let u = joined[pick % joined.len()];
        let slug = board.slug.clone();
        for r in &mut self.model.boards[b].rooms {
            if r.typist == Some(Who::M(u)) {
                let path = format!("/boards/{slug}/rooms/{}/typing", r.name);
                let body = json!({ "typing": false });
                self.api.ok("PUT", &path, Caller::Matrix(u), Some(body), 200).await;
                r.typist = None;
            }
        }
        let creator = Caller::Matrix(self.model.boards[b].creator);
        let path = format!("/boards/{slug}/members/{}", Who::M(u).user_id());
        self.api.ok("DELETE", &path, creator, None, 200).await;
        let board = &self.model.boards[b];
        let mut gone = vec![board.space.clone()];
        gone.extend(board.rooms.iter().filter(|r| r.private).map(|r| r.id.clone()));
        for room in gone {
            self.model.mem.remove(&(room, Who::M(u)));
        }
        settle(&self.stack, &self.model).await;
    }
}

// ---------------------------------------------------------------------------------------
// Queries.

#[derive(Debug, Clone)]
enum Endpoint {
    Boards,
    Board,
    Members,
    Autocomplete(&'static str),
    Rooms,
    History(&'static str),
    Tasks(Option<&'static str>, Option<&'static str>),
    Task(u64),
    Comments(u64),
    Presence,
    Inbox,
    Unread,
    ReadOne(usize),
    Stream,
    /// The stream, then a message in one of the board's rooms (a pick) and one after it
    /// in `general`, live.
    StreamLive(usize),
}

impl Endpoint {
    fn name(&self) -> &'static str {
        match self {
            Endpoint::Boards => "GET /boards",
            Endpoint::Board => "GET /boards/{slug}",
            Endpoint::Members => "GET /boards/{slug}/members",
            Endpoint::Autocomplete(_) => "GET /boards/{slug}/members?q=",
            Endpoint::Rooms => "GET /boards/{slug}/rooms",
            Endpoint::History(_) => "GET /boards/{slug}/rooms/{room}/messages",
            Endpoint::Tasks(..) => "GET /boards/{slug}/tasks",
            Endpoint::Task(_) => "GET /boards/{slug}/tasks/{number}",
            Endpoint::Comments(_) => "GET /boards/{slug}/tasks/{number}/comments",
            Endpoint::Presence => "GET /boards/{slug}/presence",
            Endpoint::Inbox => "GET /notifications",
            Endpoint::Unread => "GET /notifications/unread_count",
            Endpoint::ReadOne(_) => "POST /notifications/{id}/read",
            Endpoint::Stream => "GET /boards/{slug}/events",
            Endpoint::StreamLive(_) => "GET /boards/{slug}/events, live",
        }
    }
}

#[derive(Debug, Clone)]
struct Query {
    caller: Caller,
    endpoint: Endpoint,
    /// `None`: the board that does not exist.
    board: Option<usize>,
}

fn caller_strategy() -> impl Strategy<Value = Caller> {
    prop_oneof![
        5 => (0..=USERS.len()).prop_map(Caller::Matrix),
        3 => (0..CLIENTS).prop_map(|c| Caller::Client { client: c, vuser: c }),
        1 => (0..CLIENTS, 0..CLIENTS).prop_map(|(client, vuser)| Caller::Client { client, vuser }),
    ]
}

fn endpoint_strategy() -> impl Strategy<Value = Endpoint> {
    prop_oneof![
        1 => Just(Endpoint::Boards),
        2 => Just(Endpoint::Board),
        2 => Just(Endpoint::Members),
        2 => prop::sample::select(PREFIXES.to_vec()).prop_map(Endpoint::Autocomplete),
        2 => Just(Endpoint::Rooms),
        4 => prop::sample::select(ROOM_NAMES.to_vec()).prop_map(Endpoint::History),
        2 => (
            prop::option::of(prop::sample::select(LABELS.to_vec())),
            prop::option::of(prop::sample::select(STATUSES.to_vec())),
        )
            .prop_map(|(l, s)| Endpoint::Tasks(l, s)),
        2 => (1..=4u64).prop_map(Endpoint::Task),
        2 => (1..=4u64).prop_map(Endpoint::Comments),
        2 => Just(Endpoint::Presence),
        2 => Just(Endpoint::Inbox),
        1 => Just(Endpoint::Unread),
        1 => any::<usize>().prop_map(Endpoint::ReadOne),
        3 => Just(Endpoint::Stream),
        2 => any::<usize>().prop_map(Endpoint::StreamLive),
    ]
}

fn query_strategy(boards: usize) -> impl Strategy<Value = Query> {
    (caller_strategy(), endpoint_strategy(), prop::option::weighted(0.85, 0..boards))
        .prop_map(|(caller, endpoint, board)| Query { caller, endpoint, board })
}

/// Queries run and how they came out, per endpoint.
#[derive(Default)]
struct Counts {
    by_endpoint: BTreeMap<&'static str, (u32, u32)>,
}

/// A check's failure.
fn fail(q: &Query, what: String) -> TestCaseError {
    TestCaseError::fail(format!("{q:?}: {what}"))
}

fn errcode(body: &str) -> Option<String> {
    serde_json::from_str::<Value>(body).ok()?["errcode"].as_str().map(str::to_owned)
}

fn ids(list: &Value, field: &str) -> BTreeSet<String> {
    list.as_array()
        .map(|a| a.iter().filter_map(|m| m[field].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

impl Built {
    /// Runs `q`; `Ok(true)` when it was allowed, `Ok(false)` when refused as it should be.
    async fn run(&mut self, q: &Query) -> Result<bool, TestCaseError> {
        let m = &self.model;
        let who = Model::who(q.caller);
        let slug = m.slug(q.board);
        let access = m.access(q.caller, q.board);
        let board_wide = !matches!(
            q.endpoint,
            Endpoint::Boards | Endpoint::Inbox | Endpoint::Unread | Endpoint::ReadOne(_)
        );
        if matches!(q.endpoint, Endpoint::Presence | Endpoint::Stream)
            && self.typing_set.elapsed() > Duration::from_secs(50)
        {
            set_typing(&self.api, m).await;
            self.typing_set = Instant::now();
        }
        let mut live = None;
        let (status, text) = match &q.endpoint {
            Endpoint::Boards => self.api.call("GET", "/boards", q.caller, None).await,
            Endpoint::Board => {
                self.api.call("GET", &format!("/boards/{slug}"), q.caller, None).await
            }
            Endpoint::Members => {
                self.api.call("GET", &format!("/boards/{slug}/members"), q.caller, None).await
            }
            Endpoint::Autocomplete(p) => {
                let path = format!("/boards/{slug}/members?q={}", p.replace('@', "%40"));
                self.api.call("GET", &path, q.caller, None).await
            }
            Endpoint::Rooms => {
                self.api.call("GET", &format!("/boards/{slug}/rooms"), q.caller, None).await
            }
            Endpoint::History(room) => {
                let path = format!("/boards/{slug}/rooms/{room}/messages?limit=100");
                self.api.call("GET", &path, q.caller, None).await
            }
            Endpoint::Tasks(label, status) => {
                let mut path = format!("/boards/{slug}/tasks?limit=100");
                if let Some(l) = label {
                    path.push_str(&format!("&label={l}"));
                }
                if let Some(s) = status {
                    path.push_str(&format!("&status={s}"));
                }
                self.api.call("GET", &path, q.caller, None).await
            }
            Endpoint::Task(n) => {
                self.api.call("GET", &format!("/boards/{slug}/tasks/{n}"), q.caller, None).await
            }
            Endpoint::Comments(n) => {
                let path = format!("/boards/{slug}/tasks/{n}/comments?limit=100");
                self.api.call("GET", &path, q.caller, None).await
            }
            Endpoint::Presence => {
                self.api.call("GET", &format!("/boards/{slug}/presence"), q.caller, None).await
            }
            Endpoint::Inbox => {
                self.api.call("GET", "/notifications?limit=100", q.caller, None).await
            }
            Endpoint::Unread => {
                self.api.call("GET", "/notifications/unread_count", q.caller, None).await
            }
            Endpoint::ReadOne(pick) => {
                let id = match m.entries.len() {
                    0 => 999_999,
                    n => m.entries[pick % n].id,
                };
                self.api.call("POST", &format!("/notifications/{id}/read"), q.caller, None).await
            }
            Endpoint::Stream | Endpoint::StreamLive(_) => {
                match self.api.open(&slug, q.caller).await {
                    Ok(mut sse) => {
                        let replay = sse.replay().await;
                        live = Some(sse);
                        (200, replay)
                    }
                    Err(refused) => refused,
                }
            }
        };

        // Never a marker or a private room id the caller may not see, whatever the answer;
        // but its inbox keeps what it was notified of while it was there (as the
        // homeserver's notifications do), also after it left the board.
        let strict =
            matches!(q.endpoint, Endpoint::Board | Endpoint::Stream | Endpoint::StreamLive(_));
        let notified_in: BTreeSet<String> = match q.endpoint {
            Endpoint::Inbox => m.entries_of(q.caller).iter().map(|e| e.room.to_string()).collect(),
            _ => BTreeSet::new(),
        };
        for hidden in m.hidden_rooms(who, strict) {
            if text.contains(&hidden) && !notified_in.contains(&hidden) {
                return Err(fail(q, format!("the private room {hidden} leaks: {text}")));
            }
        }

        // Refusals.
        if Model::foreign(q.caller) {
            let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let belongs =
                body["error"].as_str().is_some_and(|e| e.contains("belongs to another API client"));
            if status != 403 || !belongs || !markers(&text).is_empty() {
                return Err(fail(
                    q,
                    format!("want 403, another client's user; got {status} {text}"),
                ));
            }
            return Ok(false);
        }
        if board_wide && access != Access::Allowed {
            let want = if access == Access::Forbidden {
                (403, "M_FORBIDDEN")
            } else {
                (404, "M_NOT_FOUND")
            };
            if (status, errcode(&text).as_deref()) != (want.0, Some(want.1)) {
                return Err(fail(q, format!("want {want:?}, got {status} {text}")));
            }
            if let Some(b) = q.board {
                let board = &m.boards[b];
                let mut theirs: Vec<String> =
                    board.rooms.iter().map(|r| r.id.to_string()).collect();
                theirs.push(board.space.to_string());
                if let Some(leak) = theirs.iter().find(|id| text.contains(id.as_str())) {
                    return Err(fail(q, format!("a refusal names {leak}: {text}")));
                }
            }
            if !markers(&text).is_empty() {
                return Err(fail(q, format!("a refusal carries markers: {text}")));
            }
            return Ok(false);
        }

        let b = q.board.unwrap_or(usize::MAX);
        let mut expected_markers = BTreeSet::new();
        let mut allowed = true;
        match &q.endpoint {
            Endpoint::Boards => {
                let want: BTreeSet<String> = m
                    .boards
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| m.access(q.caller, Some(*i)) == Access::Allowed)
                    .map(|(_, b)| b.slug.clone())
                    .collect();
                let body = self.ok_json(q, status, &text)?;
                let got = ids(&body["boards"], "slug");
                if got != want {
                    return Err(fail(q, format!("boards {got:?}, want {want:?}")));
                }
            }
            Endpoint::Board => {
                let board = &m.boards[b];
                let body = self.ok_json(q, status, &text)?;
                let want: BTreeSet<String> = board
                    .rooms
                    .iter()
                    .filter(|r| m.sees(r, who, true))
                    .map(|r| r.name.clone())
                    .collect();
                let got = ids(&body["rooms"], "name");
                if got != want {
                    return Err(fail(q, format!("rooms {got:?}, want {want:?}: {text}")));
                }
                for (column, count) in body["columns"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| (c["name"].clone(), c["tasks"].as_u64()))
                {
                    let want = board.tasks.iter().filter(|t| column == t.status).count() as u64;
                    if count != Some(want) {
                        return Err(fail(q, format!("column {column}: {count:?}, want {want}")));
                    }
                }
                let role = if who == Who::M(board.creator) { "owner" } else { "member" };
                if body["role"] != role {
                    return Err(fail(q, format!("role {}, want {role}", body["role"])));
                }
            }
            Endpoint::Members => {
                let body = self.ok_json(q, status, &text)?;
                let want = m.board_members(b, false);
                let got = ids(&body["members"], "user_id");
                if got != want {
                    return Err(fail(q, format!("members {got:?}, want {want:?}")));
                }
            }
            Endpoint::Autocomplete(p) => {
                let body = self.ok_json(q, status, &text)?;
                let prefix = p.trim_start_matches('@').to_lowercase();
                let want: BTreeSet<String> = m
                    .board_members(b, true)
                    .into_iter()
                    .filter(|u| u[1..].starts_with(&prefix))
                    .collect();
                let got = ids(&body["members"], "user_id");
                if got != want {
                    return Err(fail(q, format!("matches {got:?}, want {want:?}")));
                }
            }
            Endpoint::Rooms => {
                let body = self.ok_json(q, status, &text)?;
                let board = &m.boards[b];
                let want: BTreeSet<String> = board
                    .rooms
                    .iter()
                    .filter(|r| m.sees(r, who, false))
                    .map(|r| r.name.clone())
                    .collect();
                let got = ids(&body["rooms"], "name");
                if got != want {
                    return Err(fail(q, format!("rooms {got:?}, want {want:?}")));
                }
            }
            Endpoint::History(name) => {
                let board = &m.boards[b];
                let room = board.rooms.iter().find(|r| r.name == *name && m.sees(r, who, false));
                let Some(room) = room.cloned() else {
                    if (status, errcode(&text).as_deref()) != (404, Some("M_NOT_FOUND")) {
                        return Err(fail(q, format!("want 404 for the room, got {status} {text}")));
                    }
                    return self.check_markers(q, &text, &BTreeSet::new()).map(|()| false);
                };
                if matches!(who, Who::M(_)) && !m.joined(&room.id, who) {
                    // The homeserver refuses a Matrix user who has not joined the room.
                    if (status, errcode(&text).as_deref()) != (403, Some("M_FORBIDDEN")) {
                        return Err(fail(
                            q,
                            format!("want 403 from the homeserver, got {status} {text}"),
                        ));
                    }
                    return self.check_markers(q, &text, &BTreeSet::new()).map(|()| false);
                }
                let body = self.ok_json(q, status, &text)?;
                expected_markers.extend(room.messages.iter().map(|(mk, _)| mk.clone()));
                if room.name == "tasks" {
                    // The tasks' roots, and their comments in their threads.
                    expected_markers.extend(board.tasks.iter().map(|t| t.marker.clone()));
                    expected_markers.extend(
                        board.tasks.iter().filter_map(|t| Some(t.comment.as_ref()?.0.clone())),
                    );
                }
                // Every message listed is of this room: none of another room's.
                let listed = ids(&body["messages"], "event_id");
                for other in m.boards.iter().flat_map(|b| &b.rooms).filter(|r| r.id != room.id) {
                    if let Some((_, e)) = other.messages.iter().find(|(_, e)| listed.contains(e)) {
                        return Err(fail(q, format!("{e} of {} listed: {text}", other.id)));
                    }
                }
                if let Who::V(v) = who {
                    // The virtual user joined the board and the room to read it.
                    let space = board.space.clone();
                    self.model.mem.insert((space, Who::V(v)), MembershipState::Join);
                    self.model.mem.insert((room.id.clone(), Who::V(v)), MembershipState::Join);
                    settle(&self.stack, &self.model).await;
                }
            }
            Endpoint::Tasks(label, column) => {
                let body = self.ok_json(q, status, &text)?;
                let matching: Vec<&TaskM> = m.boards[b]
                    .tasks
                    .iter()
                    .filter(|t| label.is_none_or(|l| t.label == l))
                    .filter(|t| column.is_none_or(|s| t.status == s))
                    .collect();
                let want: BTreeSet<u64> = matching.iter().map(|t| t.number).collect();
                let got: BTreeSet<u64> = body["tasks"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|t| t["number"].as_u64()).collect())
                    .unwrap_or_default();
                if got != want {
                    return Err(fail(q, format!("tasks {got:?}, want {want:?}")));
                }
                expected_markers.extend(matching.iter().map(|t| t.marker.clone()));
            }
            Endpoint::Task(n) => match m.boards[b].tasks.iter().find(|t| t.number == *n) {
                Some(t) => {
                    let body = self.ok_json(q, status, &text)?;
                    let comments = u64::from(t.comment.is_some());
                    if body["number"].as_u64() != Some(*n)
                        || body["comment_count"].as_u64() != Some(comments)
                    {
                        return Err(fail(q, format!("task {n}, {comments} comments; got {text}")));
                    }
                    expected_markers.insert(t.marker.clone());
                }
                None => {
                    if (status, errcode(&text).as_deref()) != (404, Some("M_NOT_FOUND")) {
                        return Err(fail(q, format!("want 404 for the task, got {status} {text}")));
                    }
                    allowed = false;
                }
            },
            Endpoint::Comments(n) => match m.boards[b].tasks.iter().find(|t| t.number == *n) {
                Some(t) => {
                    let body = self.ok_json(q, status, &text)?;
                    let want: BTreeSet<String> = t.comment.iter().map(|(_, e)| e.clone()).collect();
                    let got = ids(&body["comments"], "event_id");
                    if got != want {
                        return Err(fail(q, format!("comments {got:?}, want {want:?}")));
                    }
                    expected_markers.extend(t.comment.iter().map(|(mk, _)| mk.clone()));
                }
                None => {
                    if (status, errcode(&text).as_deref()) != (404, Some("M_NOT_FOUND")) {
                        return Err(fail(q, format!("want 404 for the task, got {status} {text}")));
                    }
                    allowed = false;
                }
            },
            Endpoint::Presence => {
                let body = self.ok_json(q, status, &text)?;
                let members = m.board_members(b, true);
                let online = ids(&body["members"], "user_id");
                if let Some(stranger) = online.difference(&members).next() {
                    return Err(fail(q, format!("{stranger} listed online on {slug}: {text}")));
                }
                let want: BTreeMap<String, Vec<String>> = m.boards[b]
                    .rooms
                    .iter()
                    .filter(|r| m.sees(r, who, false))
                    .filter_map(|r| Some((r.name.clone(), vec![r.typist?.user_id()])))
                    .collect();
                let got: BTreeMap<String, Vec<String>> = body["typing"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|t| {
                        let users = t["users"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|u| u.as_str().map(str::to_owned))
                            .collect();
                        (t["room"].as_str().unwrap_or_default().to_owned(), users)
                    })
                    .collect();
                if got != want {
                    return Err(fail(q, format!("typing {got:?}, want {want:?}")));
                }
            }
            Endpoint::Inbox => {
                let body = self.ok_json(q, status, &text)?;
                let mine = m.entries_of(q.caller);
                let want: BTreeMap<String, bool> =
                    mine.iter().map(|e| (e.event_id.clone(), e.read)).collect();
                let list = body["notifications"].as_array().cloned().unwrap_or_default();
                let got: BTreeMap<String, bool> = list
                    .iter()
                    .map(|n| {
                        (n["event_id"].as_str().unwrap_or_default().to_owned(), n["read"] == true)
                    })
                    .collect();
                if got != want || list.iter().any(|n| n["user_id"] != who.user_id().as_str()) {
                    return Err(fail(q, format!("inbox {got:?}, want {want:?}: {text}")));
                }
                expected_markers.extend(mine.iter().map(|e| e.marker.clone()));
            }
            Endpoint::Unread => {
                let body = self.ok_json(q, status, &text)?;
                let want = m.entries_of(q.caller).iter().filter(|e| !e.read).count() as u64;
                if body["unread"].as_u64() != Some(want) {
                    return Err(fail(q, format!("unread {}, want {want}", body["unread"])));
                }
            }
            Endpoint::ReadOne(pick) => {
                let target = (!m.entries.is_empty()).then(|| pick % m.entries.len());
                let mine = target
                    .filter(|i| m.entries_of(q.caller).iter().any(|e| e.id == m.entries[*i].id));
                match mine {
                    Some(i) => {
                        let body = self.ok_json(q, status, &text)?;
                        let want = u64::from(!m.entries[i].read);
                        if body["marked"].as_u64() != Some(want) {
                            return Err(fail(q, format!("marked {}, want {want}", body["marked"])));
                        }
                        self.model.entries[i].read = true;
                    }
                    None => {
                        if (status, errcode(&text).as_deref()) != (404, Some("M_NOT_FOUND")) {
                            return Err(fail(
                                q,
                                format!("want 404 for another's entry, got {status} {text}"),
                            ));
                        }
                        allowed = false;
                    }
                }
            }
            Endpoint::Stream | Endpoint::StreamLive(_) => {
                if status != 200 {
                    return Err(fail(q, format!("want the stream, got {status} {text}")));
                }
                let board = &m.boards[b];
                let visible: BTreeMap<String, &RoomM> = board
                    .rooms
                    .iter()
                    .filter(|r| m.sees(r, who, true))
                    .map(|r| (r.name.clone(), r))
                    .collect();
                let members = m.board_members(b, true);
                let mine: Vec<&EntryM> =
                    m.entries_of(q.caller).into_iter().filter(|e| e.board == b).collect();
                let mut notified = BTreeSet::new();
                let mut typing = BTreeSet::new();
                for (event, data) in frames(&text) {
                    match event.as_str() {
                        "message" | "typing" => {
                            let room = data["room"].as_str().unwrap_or_default();
                            let Some(r) = visible.get(room) else {
                                return Err(fail(q, format!("{event} of the room {room}: {data}")));
                            };
                            if data["room_id"] != r.id.as_str() {
                                return Err(fail(q, format!("{event} of another room: {data}")));
                            }
                            if event == "typing" {
                                typing.insert(room.to_owned());
                            }
                        }
                        "notification" => {
                            if let Some(n) = data.get("notification") {
                                if n["user_id"] != who.user_id().as_str()
                                    || n["board"] != board.slug.as_str()
                                {
                                    return Err(fail(q, format!("another's notification: {data}")));
                                }
                                notified
                                    .insert(n["event_id"].as_str().unwrap_or_default().to_owned());
                            }
                            for id in data["read"].as_array().into_iter().flatten() {
                                if !mine.iter().any(|e| Some(e.id) == id.as_u64()) {
                                    return Err(fail(q, format!("another's read mark: {data}")));
                                }
                            }
                        }
                        "presence" => {
                            let user = data["user_id"].as_str().unwrap_or_default();
                            if !members.contains(user) {
                                return Err(fail(q, format!("presence of a non-member: {data}")));
                            }
                        }
                        _ => {}
                    }
                }
                let want_notified: BTreeSet<String> =
                    mine.iter().map(|e| e.event_id.clone()).collect();
                if notified != want_notified {
                    return Err(fail(
                        q,
                        format!("notifications {notified:?}, want {want_notified:?}"),
                    ));
                }
                let want_typing: BTreeSet<String> = visible
                    .values()
                    .filter(|r| r.typist.is_some())
                    .map(|r| r.name.clone())
                    .collect();
                if typing != want_typing {
                    return Err(fail(q, format!("typing in {typing:?}, want {want_typing:?}")));
                }
                expected_markers.extend(
                    visible.values().flat_map(|r| r.messages.iter().map(|(mk, _)| mk.clone())),
                );
                expected_markers.extend(board.tasks.iter().map(|t| t.marker.clone()));
                expected_markers
                    .extend(board.tasks.iter().filter_map(|t| Some(t.comment.as_ref()?.0.clone())));
            }
        }
        self.check_markers(q, &text, &expected_markers)?;
        if let (Endpoint::StreamLive(pick), Some(sse)) = (&q.endpoint, live) {
            self.live(q, b, *pick, sse).await?;
        }
        Ok(allowed)
    }

    /// A stream already replayed: a message in the room `pick` picks, then one in
    /// `general`; the stream carries the first only when the caller may see its room.
    async fn live(
        &mut self,
        q: &Query,
        b: usize,
        pick: usize,
        mut sse: Sse,
    ) -> Result<(), TestCaseError> {
        let who = Model::who(q.caller);
        self.live_sent += 2;
        let n = self.live_sent;
        let (slug, r, room, sender, creator) = {
            let board = &self.model.boards[b];
            let speaker = |r: usize| {
                (0..USERS.len()).find(|u| {
                    self.model.joined(&board.rooms[r].id, Who::M(*u))
                        && self.model.joined(&board.space, Who::M(*u))
                })
            };
            // A private room whose members all left the board: `general` instead.
            let (r, sender) = match speaker(pick % board.rooms.len()) {
                Some(u) => (pick % board.rooms.len(), u),
                None => (0, board.creator),
            };
            let room = board.rooms[r].clone();
            (board.slug.clone(), r, room, sender, board.creator)
        };
        let marker = format!("MK-m-{slug}-{}-{}", room.name, n - 1);
        let after = format!("MK-m-{slug}-general-{n}");
        let mut sent = Vec::new();
        for (caller, name, text) in
            [(sender, &room.name, &marker), (creator, &"general".to_owned(), &after)]
        {
            let path = format!("/boards/{slug}/rooms/{name}/messages");
            let body = json!({ "body": format!("{text} live") });
            let answer = self.api.ok("POST", &path, Caller::Matrix(caller), Some(body), 200).await;
            sent.push(answer["event_id"].as_str().expect("event_id").to_owned());
        }
        let rooms = &mut self.model.boards[b].rooms;
        rooms[r].messages.push((marker.clone(), sent[0].clone()));
        rooms[0].messages.push((after.clone(), sent[1].clone()));
        let text = sse.until("the message after", |f| f.contains(&after)).await;
        let m = &self.model;
        for hidden in m.hidden_rooms(who, true) {
            if text.contains(&hidden) {
                return Err(fail(q, format!("live, the private room {hidden} leaks: {text}")));
            }
        }
        for (event, data) in frames(&text) {
            if event == "message" || event == "typing" {
                let name = data["room"].as_str().unwrap_or_default();
                let seen = m.boards[b].rooms.iter().any(|r| {
                    r.name == name && data["room_id"] == r.id.as_str() && m.sees(r, who, true)
                });
                if !seen {
                    return Err(fail(q, format!("live, {event} of the room {name}: {data}")));
                }
            }
        }
        let mut want = BTreeSet::from([after]);
        if m.sees(&room, who, true) {
            want.insert(marker);
        }
        self.check_markers(q, &text, &want)
    }

    fn ok_json(&self, q: &Query, status: u16, text: &str) -> Result<Value, TestCaseError> {
        if status != 200 {
            return Err(fail(q, format!("want 200, got {status} {text}")));
        }
        serde_json::from_str(text).map_err(|e| fail(q, format!("not JSON ({e}): {text}")))
    }

    fn check_markers(
        &self,
        q: &Query,
        text: &str,
        want: &BTreeSet<String>,
    ) -> Result<(), TestCaseError> {
        let got = markers(text);
        if &got != want {
            return Err(fail(q, format!("markers {got:?}, want {want:?}: {text}")));
        }
        Ok(())
    }
}

/// The runner's seed: `BOARDROOM_PROPS_SEED` (to replay a run), else the clock.
fn seed() -> u64 {
    std::env::var("BOARDROOM_PROPS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_caller_sees_exactly_what_membership_allows() {
    let started = Instant::now();
    let seed = seed();
    eprintln!("access_props: seed {seed} (BOARDROOM_PROPS_SEED={seed} replays this run)");
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let config = Config {
        cases: CASES,
        failure_persistence: None,
        max_shrink_iters: 32,
        ..Config::default()
    };
    // Worlds come from one runner; each world's queries from a runner of its own (a
    // runner counts its cases across runs).
    let mut worlds =
        TestRunner::new_with_rng(config.clone(), TestRng::from_seed(RngAlgorithm::ChaCha, &bytes));
    let mut total = Counts::default();
    for world in 1..=WORLDS {
        let began = Instant::now();
        let wg = world_gen().new_tree(&mut worlds).expect("a world").current();
        let mut runner = TestRunner::new_with_rng(config.clone(), worlds.new_rng());
        eprintln!("access_props: world {world}: {wg:#?}");
        let built = build(&wg).await;
        eprintln!(
            "access_props: world {world} built in {:.1?}: {} boards, {} rooms, {} tasks, {} inbox entries, {} removed, {}",
            began.elapsed(),
            built.model.boards.len(),
            built.model.boards.iter().map(|b| b.rooms.len()).sum::<usize>(),
            built.model.boards.iter().map(|b| b.tasks.len()).sum::<usize>(),
            built.model.entries.len(),
            if wg.remove.is_some() { "a member" } else { "nobody" },
            if wg.rescope.is_some() { "scopes changed and restarted" } else { "scopes kept" },
        );
        let boards = built.model.boards.len();
        // Taken out for each query: nothing borrowed is held across its awaits.
        let built = RefCell::new(Some(built));
        let counts = RefCell::new(Counts::default());
        let handle = tokio::runtime::Handle::current();
        let queried = Instant::now();
        let result = runner.run(&query_strategy(boards), |q| {
            let outcome = tokio::task::block_in_place(|| {
                let mut world = built.borrow_mut().take().expect("the world");
                let outcome = handle.block_on(world.run(&q));
                *built.borrow_mut() = Some(world);
                outcome
            })?;
            let mut counts = counts.borrow_mut();
            let entry = counts.by_endpoint.entry(q.endpoint.name()).or_default();
            if outcome {
                entry.0 += 1;
            } else {
                entry.1 += 1;
            }
            Ok(())
        });
        let counts = counts.into_inner();
        let n: u32 = counts.by_endpoint.values().map(|(a, r)| a + r).sum();
        eprintln!("access_props: world {world}: {n} queries in {:.1?}", queried.elapsed());
        for (name, (a, r)) in counts.by_endpoint {
            let entry = total.by_endpoint.entry(name).or_default();
            entry.0 += a;
            entry.1 += r;
        }
        if let Err(e) = result {
            panic!("seed {seed}, world {world}: {e}");
        }
        // Boardroom and Synapse stop here, before the next world's start.
        drop(built);
    }
    let (mut allowed, mut refused) = (0, 0);
    eprintln!("access_props: queries per endpoint (allowed / refused):");
    for (name, (a, r)) in &total.by_endpoint {
        eprintln!("  {name:<44} {a:>4} / {r:>4}");
        allowed += a;
        refused += r;
    }
    eprintln!(
        "access_props: {WORLDS} worlds, {} queries, {allowed} allowed, {refused} refused, in {:.1?}",
        allowed + refused,
        started.elapsed()
    );
}

/// Found by the property test above: the typing a live stream shows on connect (its
/// snapshot) included a private room's to a member only invited to that room, while the
/// stream shows a private room's messages and typing only to those who joined it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_shows_no_typing_of_a_private_room_to_a_member_only_invited_there() {
    let config = "[permissions]\nboard_creators = [\"@alice:localhost\"]\n";
    let s = crate::harness::Launch::start(config).await;
    let api = Api {
        base: s.api.clone(),
        http: reqwest::Client::new(),
        tokens: vec![s.alice.token.clone(), s.bob.token.clone()],
    };
    let (alice, bob) = (Caller::Matrix(0), Caller::Matrix(1));
    let body = json!({ "name": "leads", "private": true, "members": [s.bob.user_id] });
    let made = api.ok("POST", "/boards/launch/rooms", alice, Some(body), 201).await;
    let leads = made["room_id"].as_str().expect("room_id").to_owned();
    s.alice.join(&leads).await.expect("alice joins leads");
    // Boardroom has indexed alice's join and bob's invite.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mine = api.ok("GET", "/boards/launch", alice, None, 200).await;
        let his = api.ok("GET", "/boards/launch/rooms", bob, None, 200).await;
        if ids(&mine["rooms"], "name").contains("leads")
            && ids(&his["rooms"], "name").contains("leads")
        {
            break;
        }
        assert!(Instant::now() < deadline, "leads not indexed: {mine} {his}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let typing = json!({ "typing": true, "timeout_ms": 60_000 });
    api.ok("PUT", "/boards/launch/rooms/leads/typing", alice, Some(typing), 200).await;

    // Alice, who joined leads, sees her typing there; bob, only invited, sees nothing of it.
    let (status, text) = api.stream("launch", alice).await;
    assert_eq!(status, 200, "{text}");
    let typing_in = |text: &str| -> Vec<Value> {
        frames(text).into_iter().filter(|(e, _)| e == "typing").map(|(_, d)| d).collect()
    };
    let seen = typing_in(&text);
    assert!(seen.iter().any(|d| d["room"] == "leads"), "{text}");
    let (status, text) = api.stream("launch", bob).await;
    assert_eq!(status, 200, "{text}");
    assert!(typing_in(&text).is_empty(), "bob sees typing in leads: {text}");
    assert!(!text.contains(&leads), "bob's stream names leads: {text}");
    // The presence endpoint lists the rooms the caller is in (joined or invited), as the
    // room list does: bob learns of leads there, as he does from his invite.
    let presence = api.ok("GET", "/boards/launch/presence", bob, None, 200).await;
    assert_eq!(presence["typing"][0]["room"], "leads", "{presence}");
}
