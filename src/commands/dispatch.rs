//! Runs a chat command: parses it, calls the operation as the sender, and renders the
//! result, or the refusal (its sentence, then the command's usage). No rule lives here:
//! the operations check rights and input.

use ruma::{EventId, RoomId, UserId};

use super::{
    Command, Reply, board, board::BoardCommand, error_reply, help, parse, render, task,
    task::TaskCommand,
};
use crate::{
    boards,
    context::Context,
    domain::{
        Action,
        op::{Actor, BoardRef, Refusal, Request},
        text::excerpt,
    },
    tasks::{self, change::TaskRef, create::NewTask},
};

/// Most tasks `!task list` reads: more than one message can show (the rest are counted).
pub(crate) const LIST_READ_LIMIT: usize = 300;

/// A command as it arrived in a room.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChatCommand<'a> {
    /// Its text (it starts with `!`).
    pub text: &'a str,
    /// Its event.
    pub event_id: &'a EventId,
    /// Who sent it.
    pub sender: &'a UserId,
    /// Where.
    pub room_id: &'a RoomId,
    /// The thread it was written in, if any.
    pub thread: Option<&'a EventId>,
    /// Its place in arrival order.
    pub seq: u64,
}

/// What a command produced: its reply (`None` when a feed entry in the command's thread
/// answers), and further messages to send (feed entries, root edits).
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// The reply to the command.
    pub reply: Option<Reply>,
    /// Messages to send after it.
    pub actions: Vec<Action>,
}

impl Outcome {
    fn reply(reply: Reply) -> Self {
        Self { reply: Some(reply), actions: Vec::new() }
    }
}

/// Runs `cmd` and says what happened.
pub(crate) async fn run(ctx: &Context, cmd: &ChatCommand<'_>) -> Outcome {
    let command = match parse(cmd.text) {
        Ok(c) => c,
        Err(err) => return Outcome::reply(error_reply(&err)),
    };
    let actor = Actor::user(cmd.sender.to_owned());
    let req = Request {
        actor: &actor,
        cause: cmd.event_id,
        seq: cmd.seq,
        room: Some(cmd.room_id),
        thread: cmd.thread,
    };
    let here = BoardRef::Room(cmd.room_id);
    match command {
        Command::Help => Outcome::reply(help::help()),
        Command::Board(c) => run_board(ctx, &req, here, c).await,
        Command::Columns(columns) => {
            let done = tasks::columns::set_columns(ctx, &req, here, &columns).await;
            answer(done.map(|s| render::columns_set(&s)), task::COLUMNS.usage, "!board columns")
        }
        Command::Task(c) => run_task(ctx, &req, here, c).await,
    }
}

async fn run_board(
    ctx: &Context,
    req: &Request<'_>,
    here: BoardRef<'_>,
    command: BoardCommand,
) -> Outcome {
    match command {
        BoardCommand::Create { slug, name } => {
            let input = boards::create::NewBoard { slug, name, topic: None };
            let done = boards::create::create(ctx, req, &input).await;
            answer(
                done.map(|c| render::board_created(&c, req)),
                board::CREATE.usage,
                "!board create",
            )
        }
        BoardCommand::Invite(user) => {
            let done = boards::members::invite(ctx, req, here, &user).await;
            answer(done.map(|c| render::invited(&c)), board::INVITE.usage, "!board invite")
        }
        BoardCommand::Remove(user) => {
            let done = boards::members::remove(ctx, req, here, &user).await;
            answer(done.map(|c| render::removed(&c)), board::REMOVE.usage, "!board remove")
        }
        BoardCommand::Room { name, private, members } => {
            let input = boards::rooms::NewRoom { name, private, members };
            let done = boards::rooms::add_room(ctx, req, here, &input).await;
            answer(done.map(|r| render::room_added(&r)), board::ROOM.usage, "!board room")
        }
        BoardCommand::Info => {
            let done = boards::info::info(ctx, req, here);
            answer(done.map(|i| render::board_info(&i)), board::INFO.usage, "!board info")
        }
    }
}

async fn run_task(
    ctx: &Context,
    req: &Request<'_>,
    here: BoardRef<'_>,
    command: TaskCommand,
) -> Outcome {
    match command {
        TaskCommand::New(title) => {
            match tasks::create::create(ctx, req, here, &NewTask::titled(title)).await {
                Ok(done) => Outcome {
                    reply: Some(render::task_created(&done.value)),
                    actions: done.actions,
                },
                Err(refusal) => refused(&refusal, task::NEW.usage, "!task new"),
            }
        }
        TaskCommand::Change { number, change, usage } => {
            let which = match (number, req.thread) {
                (Some(number), _) => TaskRef::Number { at: here, number },
                (None, Some(root)) => TaskRef::Thread(root),
                (None, None) => {
                    let refusal = Refusal::invalid(
                        "Name the task as #n, or write the command in the task's thread.",
                    );
                    return refused(&refusal, usage, "!task");
                }
            };
            match tasks::change::change(ctx, req, which, &change).await {
                Ok(done) => {
                    Outcome { reply: render::task_changed(&done.value), actions: done.actions }
                }
                Err(refusal) => refused(&refusal, usage, "!task"),
            }
        }
        TaskCommand::List(column) => {
            let done = tasks::list::list(ctx, req, here, column.as_deref(), LIST_READ_LIMIT);
            answer(
                done.map(|l| render::task_list(&l, column.as_deref())),
                task::LIST.usage,
                "!task list",
            )
        }
    }
}

fn answer(done: Result<Reply, Refusal>, usage: &str, what: &str) -> Outcome {
    match done {
        Ok(reply) => Outcome::reply(reply),
        Err(refusal) => refused(&refusal, usage, what),
    }
}

/// The reply to a refused command: the refusal's sentence, and for a rule, the usage.
pub(crate) fn refused(refusal: &Refusal, usage: &str, what: &str) -> Outcome {
    refusal.log(what);
    Outcome::reply(refusal_reply(refusal, usage))
}

/// How a refusal reads in the room.
pub(crate) fn refusal_reply(refusal: &Refusal, usage: &str) -> Reply {
    match refusal {
        Refusal::Rule { sentence, .. } => {
            render::text(format!("{}\nUsage: {usage}", excerpt(sentence, super::MAX_PROBLEM_CHARS)))
        }
        Refusal::Failed(_) => {
            render::text(excerpt(&refusal.sentence(), super::MAX_PROBLEM_CHARS).into_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use ruma::{
        events::room::{member::MembershipState, message::RoomMessageEventContent},
        room_id, user_id,
    };

    use super::*;
    use crate::{
        Config,
        app::App,
        commands::LISTING_BUDGET,
        domain::{
            board::{BoardRecord, RoomKind, RoomRecord},
            op::RuleKind,
            task::TaskRecord,
        },
    };

    /// A board `launch` whose member is alice (power 0: no admin) and whose every task sits
    /// in `todo`, with long titles.
    fn board_with_tasks(dir: &std::path::Path, tasks: u64) -> App {
        let config = Config::offline(&dir.join("db"), "").expect("config");
        let app = App::new(config.validate().expect("valid")).expect("app");
        let store = &app.ctx.store;
        let space = room_id!("!space:localhost");
        store
            .put_board(&BoardRecord::example("launch", space, user_id!("@owner:localhost")))
            .expect("board");
        let record = RoomRecord {
            board: "launch".into(),
            name: "tasks".into(),
            kind: RoomKind::Tasks,
            private: false,
            pending_move_from: None,
        };
        store.put_room(room_id!("!tasks:localhost"), &record).expect("room");
        store
            .set_membership(
                space,
                user_id!("@alice:localhost"),
                &MembershipState::Join,
                None,
                Some("launch"),
            )
            .expect("member");
        for n in 1..=tasks {
            let root = format!("$root{n}_abcdefghijklmnopqrstuvwxyz0123456789");
            let task = TaskRecord::example("launch", n, root.try_into().expect("event id"));
            store.put_task(&task).expect("task");
        }
        app
    }

    async fn say(app: &App, sender: &UserId, text: &str) -> Outcome {
        let cmd = ChatCommand {
            text,
            event_id: ruma::event_id!("$cmd"),
            sender,
            room_id: room_id!("!space:localhost"),
            thread: None,
            seq: 1,
        };
        run(&app.ctx, &cmd).await
    }

    async fn list(app: &App, column: Option<&str>) -> Reply {
        let text = column.map_or("!task list".to_owned(), |c| format!("!task list {c}"));
        say(app, user_id!("@alice:localhost"), &text).await.reply.expect("a reply")
    }

    #[tokio::test]
    async fn a_long_task_list_still_fits_in_one_event() {
        let dir = tempfile::tempdir().expect("tempdir");
        let app = board_with_tasks(dir.path(), 1000);
        for column in [None, Some("todo")] {
            let reply = list(&app, column).await;
            let event = serde_json::to_vec(&RoomMessageEventContent::text_html(
                reply.plain.clone(),
                reply.html.clone(),
            ))
            .expect("json");
            assert!(event.len() < 60_000, "{} bytes", event.len());
            assert!(reply.plain.len() + reply.html.len() <= LISTING_BUDGET + 500);
            assert!(reply.plain.contains("#1 Task number 1 "), "{}", reply.plain);
            assert!(reply.plain.contains("todo (1000)"), "the count is whole: {}", reply.plain);
            assert!(reply.plain.contains("more tasks"), "{}", reply.plain);
            assert!(!reply.plain.contains("#1000 "), "{}", reply.plain);
        }
    }

    #[tokio::test]
    async fn a_short_task_list_is_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let app = board_with_tasks(dir.path(), 3);
        let reply = list(&app, None).await;
        assert!(reply.plain.contains("#3 Task number 3"), "{}", reply.plain);
        assert!(!reply.plain.contains("more tasks"), "{}", reply.plain);
    }

    /// One refusal, two interfaces: what the chat command says is the operation's own
    /// sentence (then the usage), and the operation called directly (as the API does)
    /// gives the same sentence with its Matrix error code and HTTP status.
    #[tokio::test]
    async fn a_refusal_reads_the_same_from_chat_and_from_the_operation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let app = board_with_tasks(dir.path(), 1);
        let ctx = &app.ctx;

        // A non-member creating a task.
        let mallory = user_id!("@mallory:localhost");
        let said = say(&app, mallory, "!task new Sneaky").await;
        let actor = Actor::user(mallory.to_owned());
        let req = Request {
            actor: &actor,
            cause: ruma::event_id!("$direct"),
            seq: 0,
            room: None,
            thread: None,
        };
        let refusal =
            tasks::create::create(ctx, &req, BoardRef::Slug("launch"), &NewTask::titled("Sneaky"))
                .await
                .expect_err("a non-member is refused");
        let sentence = "Only members of the board launch can create tasks.";
        assert_eq!(refusal.sentence(), sentence);
        assert_eq!(refusal.status_and_kind().0, http::StatusCode::FORBIDDEN);
        assert_eq!(refusal.status_and_kind().1.errcode().to_string(), "M_FORBIDDEN");
        // The same, whether the board is named by slug or by one of its rooms; and a board
        // that does not exist reads the same to an outsider as one they are not on.
        let in_room = tasks::create::create(
            ctx,
            &req,
            BoardRef::Room(room_id!("!space:localhost")),
            &NewTask::titled("x"),
        )
        .await
        .expect_err("refused");
        assert_eq!(in_room.sentence(), sentence);
        let nowhere =
            tasks::create::create(ctx, &req, BoardRef::Slug("nowhere"), &NewTask::titled("x"))
                .await
                .expect_err("refused");
        assert_eq!(nowhere.sentence(), "Only members of the board nowhere can create tasks.");
        assert_eq!(
            said.reply.expect("a reply").plain,
            format!("{sentence}\nUsage: {}", task::NEW.usage)
        );
        assert!(said.actions.is_empty(), "a refused command sends nothing else");
        assert!(ctx.store.task("launch", 2).expect("read").is_none(), "no task was created");

        // A member without power inviting.
        let alice = user_id!("@alice:localhost");
        let said = say(&app, alice, "!board invite @bob:localhost").await;
        let actor = Actor::user(alice.to_owned());
        let req = Request { actor: &actor, ..req };
        let refusal = boards::members::invite(
            ctx,
            &req,
            BoardRef::Slug("launch"),
            user_id!("@bob:localhost"),
        )
        .await
        .expect_err("no power, no invite");
        let sentence = "Only board admins (power 50 or more in the board's space) can invite \
                        people to the board; @alice:localhost is a member.";
        assert_eq!(refusal.sentence(), sentence);
        assert!(matches!(refusal, Refusal::Rule { kind: RuleKind::Forbidden, .. }));
        let api = crate::Error::from(refusal).to_matrix();
        assert_eq!(api.status_code, http::StatusCode::FORBIDDEN);
        assert_eq!(
            said.reply.expect("a reply").plain,
            format!("{sentence}\nUsage: {}", board::INVITE.usage)
        );
    }
}
