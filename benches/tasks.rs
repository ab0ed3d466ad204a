//! The board and task index as it grows, on what every message in a board room asks:
//! - who watches a task (asked for every new comment in its thread, to fill the watchers'
//!   inboxes), for a task with 100, 10,000 or 100,000 comments by 20 authors;
//! - who `@alice smith` names in a room (mention resolution), and who goes by a name
//!   starting with `user12` (autocomplete), in rooms of 100 and 10,000 members;
//! - what a message of 60,000 `@`s costs when a member is named 250 `@`s (the bound on
//!   mention resolution);
//! - a board's task counts per column (`!board info`), kept or read from every task, for
//!   boards of 1,000 and 100,000 tasks.
//!
//! RocksDB on `/dev/shm`.
//!
//! Run: `cargo bench --bench tasks`. Figures go in docs/PERFORMANCE.md.

use boardroom::{
    domain::mention,
    domain::task::{Comment, TaskRecord},
    store::Store,
    testing::RoomAudience,
};
use divan::Bencher;
use ruma::events::room::member::MembershipState;

fn main() {
    divan::main();
}

#[divan::bench(args = [100, 10_000, 100_000], sample_count = 100)]
fn watchers_of_a_task(bencher: Bencher, comments: u64) {
    let dir = tempfile::tempdir_in("/dev/shm").or_else(|_| tempfile::tempdir()).expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    let mut task = TaskRecord::example("launch", 1, "$root".try_into().expect("event id"));
    task.fields.assignees = vec!["@assignee:localhost".try_into().expect("user")];
    store.put_task(&task).expect("task");
    for i in 0..comments {
        let comment = Comment {
            event_id: format!("$comment{i}").try_into().expect("event id"),
            author: format!("@user{}:localhost", i % 20).try_into().expect("user"),
            body: "a comment of about the usual length, with a few words in it".into(),
            ts: i,
        };
        store.put_comment("launch", 1, &comment).expect("comment");
    }
    bencher.bench_local(|| {
        let w = store.watchers("launch", 1).expect("watchers");
        assert_eq!(w.len(), 22);
    });
}

fn room_of(members: usize) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir_in("/dev/shm").or_else(|_| tempfile::tempdir()).expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    let room = ruma::room_id!("!general:localhost");
    for i in 0..members {
        let user: ruma::OwnedUserId = format!("@user{i}:localhost").try_into().expect("user");
        let name = if i == 7 { "Alice Smith".to_owned() } else { format!("User {i}") };
        store
            .set_membership(room, &user, &MembershipState::Join, Some(&name), None)
            .expect("member");
    }
    (dir, store)
}

#[divan::bench(args = [100, 10_000], sample_count = 100)]
fn mention_by_name(bencher: Bencher, members: usize) {
    let (_dir, store) = room_of(members);
    let room = ruma::room_id!("!general:localhost");
    bencher.bench_local(|| {
        let found = store.name_at(room, "alice smith, can you look at this?").expect("name");
        assert_eq!(found.map(|(len, _)| len), Some(11));
    });
}

/// Issue 10's worst case: a member named 250 `@`s, and a message of 60,000 `@`s (took
/// 23 s of CPU before mention resolution was bounded).
#[divan::bench(args = [100, 10_000], sample_count = 30)]
fn mentions_in_a_flood_of_at_signs(bencher: Bencher, members: usize) {
    let (_dir, store) = room_of(members);
    let room = ruma::room_id!("!general:localhost");
    let name = "@".repeat(250);
    store
        .set_membership(
            room,
            ruma::user_id!("@mallory:localhost"),
            &MembershipState::Join,
            Some(&name),
            None,
        )
        .expect("member");
    let body = "@".repeat(60_000);
    bencher.bench_local(|| {
        let audience = RoomAudience::new(&store, room);
        let found = mention::plain_mentions(&body, &audience).expect("resolve");
        assert!(found.is_empty());
    });
}

#[divan::bench(args = [100, 10_000], sample_count = 100)]
fn autocomplete_by_prefix(bencher: Bencher, members: usize) {
    let (_dir, store) = room_of(members);
    let room = ruma::room_id!("!general:localhost");
    bencher.bench_local(|| {
        let found = store.members_named(room, "user12", 20).expect("named");
        assert!(!found.is_empty());
    });
}

fn board_of(tasks: u64) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir_in("/dev/shm").or_else(|_| tempfile::tempdir()).expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    let columns = ["todo", "doing", "review", "done"];
    for n in 1..=tasks {
        let mut task =
            TaskRecord::example("launch", n, format!("$root{n}").try_into().expect("event id"));
        task.fields.status = columns[(n % 4) as usize].into();
        store.put_task(&task).expect("task");
    }
    (dir, store)
}

/// What `!board info` reads for its counts per column: the kept counts, against reading
/// every task (what it did before the counts were kept).
#[divan::bench(args = [1_000, 100_000], sample_count = 20)]
fn counts_per_column(bencher: Bencher, tasks: u64) {
    let (_dir, store) = board_of(tasks);
    bencher.bench_local(|| {
        let counts = store.column_counts("launch").expect("counts");
        assert_eq!(counts.iter().map(|(_, n)| n).sum::<u64>(), tasks);
    });
}

#[divan::bench(args = [1_000, 100_000], sample_count = 20)]
fn counts_by_reading_every_task(bencher: Bencher, tasks: u64) {
    let (_dir, store) = board_of(tasks);
    bencher.bench_local(|| {
        let all = store.tasks_of("launch").expect("tasks");
        let todo = all.iter().filter(|t| !t.fields.deleted && t.fields.status == "todo").count();
        assert_eq!(todo as u64, tasks / 4);
    });
}
