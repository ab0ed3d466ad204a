//! The end-to-end harness: a real Synapse from PyPI (started through `scripts/synapse.py`
//! with the venv that `scripts/setup.sh` installs), Boardroom in-process on a loopback
//! port, and Matrix users acting through the client-server API with ruma's types.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use boardroom::{
    Config,
    config::Settings,
    matrix::{Auth, HomeserverClient, RetryPolicy},
};
use hmac::{KeyInit, Mac};
use ruma::{
    OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UserId,
    api::client::{
        message::{get_message_events, send_message_event},
        room::create_room,
    },
    events::{
        AnyMessageLikeEvent, AnyStateEvent, AnyTimelineEvent, MessageLikeEvent, StateEvent,
        room::{member::MembershipState, message::RoomMessageEventContent},
    },
    serde::Raw,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The server name every test homeserver uses.
pub(crate) const SERVER_NAME: &str = "localhost";
const SHARED_SECRET: &str = "boardroom-test-shared-secret";

/// What makes a directory the project's root: the script that runs Synapse.
const SYNAPSE_SCRIPT: &str = "scripts/synapse.py";

/// The project's root (the directory with `scripts/synapse.py`), found when the tests run,
/// not when they were built: with a target directory shared between clones, a test binary
/// built in one clone may run from another, and must use that clone's scripts. See
/// [`find_project_root`] for where it looks.
pub(crate) fn project_root() -> PathBuf {
    let var = |name| std::env::var_os(name).map(PathBuf::from);
    find_project_root(
        var("BOARDROOM_ROOT"),
        var("CARGO_MANIFEST_DIR"),
        std::env::current_dir().ok(),
        Path::new(env!("CARGO_MANIFEST_DIR")),
    )
}

/// The first that holds `scripts/synapse.py` of: `root` (`BOARDROOM_ROOT`, which
/// `scripts/test.sh` sets); `manifest_dir` (`CARGO_MANIFEST_DIR` as `cargo test` sets it
/// for the run); `cwd` or one of its parents (cargo runs tests in the package's root);
/// and last, `built` (the clone the tests were built in).
pub(crate) fn find_project_root(
    root: Option<PathBuf>,
    manifest_dir: Option<PathBuf>,
    cwd: Option<PathBuf>,
    built: &Path,
) -> PathBuf {
    let holds_script = |dir: &Path| dir.join(SYNAPSE_SCRIPT).is_file();
    root.into_iter()
        .chain(manifest_dir)
        .find(|dir| holds_script(dir))
        .or_else(|| cwd?.ancestors().find(|dir| holds_script(dir)).map(Path::to_path_buf))
        .unwrap_or_else(|| built.to_path_buf())
}

/// The `boardroom` binary: the one cargo names for this run (`CARGO_BIN_EXE_boardroom` in
/// the environment of `cargo test`), else the one named when the tests were built.
pub(crate) fn boardroom_exe() -> PathBuf {
    std::env::var_os("CARGO_BIN_EXE_boardroom")
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_boardroom")), PathBuf::from)
}

/// The Synapse venv `scripts/setup.sh` installs.
pub(crate) fn synapse_python() -> PathBuf {
    let venv = std::env::var_os("BOARDROOM_SYNAPSE_VENV").map(PathBuf::from).unwrap_or_else(|| {
        let cache = std::env::var_os("BOARDROOM_CACHE").map(PathBuf::from).unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/boardroom")
        });
        cache.join("synapse-1.163.2")
    });
    let python = venv.join("bin/python");
    assert!(
        python.exists(),
        "no Synapse venv at {}: run scripts/setup.sh (the README's test command does)",
        venv.display()
    );
    python
}

/// A free loopback port.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The port a test's Synapse was to listen on was taken by another process.
#[derive(Debug)]
pub(crate) struct PortTaken;

/// The inode of the socket listening on 127.0.0.1:`port`, from `/proc/net/tcp`.
fn listener_inode(port: u16) -> Option<String> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let local = format!("0100007F:{port:04X}");
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // local_address, st (0A: LISTEN), inode
        (fields.get(1) == Some(&local.as_str()) && fields.get(3) == Some(&"0A"))
            .then(|| fields.get(9).map(|i| (*i).to_owned()))
            .flatten()
    })
}

/// What `path` holds past its first `from` bytes (nothing when it cannot be read).
fn log_since(path: &Path, from: u64) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    let from = usize::try_from(from).unwrap_or(usize::MAX).min(bytes.len());
    String::from_utf8_lossy(&bytes[from..]).into_owned()
}

/// Whether process `pid` holds the socket listening on 127.0.0.1:`port`.
fn listens_on(pid: u32, port: u16) -> bool {
    let Some(inode) = listener_inode(port) else { return false };
    let wanted = format!("socket:[{inode}]");
    std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
        fds.filter_map(Result::ok)
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.to_string_lossy() == wanted))
    })
}

/// A running Synapse; stopped (by its pid) when dropped.
pub(crate) struct Synapse {
    child: Option<Child>,
    /// Its working directory.
    pub(crate) dir: tempfile::TempDir,
    /// `http://127.0.0.1:<port>`
    pub(crate) url: String,
    /// The appservice registrations it runs with.
    registrations: Vec<PathBuf>,
}

impl Synapse {
    /// Starts Synapse on `port` and waits until it answers. `Err(PortTaken)` when the port
    /// turned out to be another process's (a free port can be taken by a test running
    /// beside this one before Synapse binds it): what answers there is not this Synapse,
    /// or Synapse could not listen there and exited.
    async fn spawn(&mut self, port: u16, extra_args: &[&str]) -> Result<(), PortTaken> {
        let mut cmd = Command::new(synapse_python());
        cmd.arg(project_root().join(SYNAPSE_SCRIPT))
            .args(["run", "--dir"])
            .arg(self.dir.path())
            .args(["--port", &port.to_string(), "--server-name", SERVER_NAME])
            .args(["--shared-secret", SHARED_SECRET]);
        for r in &self.registrations {
            cmd.arg("--registration").arg(r);
        }
        cmd.args(extra_args);
        cmd.stdout(Stdio::null()).stderr(Stdio::inherit());
        // What this start adds to the log (a restart appends to the same file).
        let log_path = self.dir.path().join("homeserver.log");
        let log_from = std::fs::metadata(&log_path).map_or(0, |m| m.len());
        self.child = Some(cmd.spawn().expect("start synapse"));
        // A port some other process took may hold a request without answering it.
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("an HTTP client");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = http.get(format!("{}/_matrix/client/versions", self.url)).send().await
                && r.status().is_success()
                && let Some(child) = self.child.as_mut()
            {
                if listens_on(child.id(), port) {
                    return Ok(());
                }
                if listener_inode(port).is_some() {
                    // Someone else's server answers on this port: ours cannot bind it.
                    let _ = child.kill();
                    let _ = child.wait();
                    self.child = None;
                    return Err(PortTaken);
                }
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                let log = log_since(&log_path, log_from);
                if log.contains("Address already in use") {
                    // The port was free when chosen, and another process bound it before
                    // Synapse could.
                    return Err(PortTaken);
                }
                // The directory goes with the panic: the log's end goes in its message.
                let lines: Vec<&str> = log.lines().collect();
                let tail = lines[lines.len().saturating_sub(40)..].join("\n");
                panic!("synapse exited with {status}; the end of its log:\n{tail}");
            }
            assert!(Instant::now() < deadline, "synapse did not answer within 60 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Registers `localpart` (password `password`) and returns a client acting as them.
    pub(crate) async fn register(&self, localpart: &str) -> User {
        let http = reqwest::Client::new();
        let endpoint = format!("{}/_synapse/admin/v1/register", self.url);
        let nonce: serde_json::Value =
            http.get(&endpoint).send().await.expect("nonce").json().await.expect("nonce json");
        let nonce = nonce["nonce"].as_str().expect("nonce field").to_owned();
        let password = "password";
        let mut mac =
            hmac::Hmac::<sha1::Sha1>::new_from_slice(SHARED_SECRET.as_bytes()).expect("hmac");
        mac.update(format!("{nonce}\0{localpart}\0{password}\0notadmin").as_bytes());
        let mac_hex: String =
            mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
        let resp: serde_json::Value = http
            .post(&endpoint)
            .json(&serde_json::json!({
                "nonce": nonce, "username": localpart, "password": password,
                "admin": false, "mac": mac_hex,
            }))
            .send()
            .await
            .expect("register")
            .json()
            .await
            .expect("register json");
        let token = resp["access_token"].as_str().unwrap_or_else(|| panic!("no token: {resp}"));
        let user_id: OwnedUserId =
            resp["user_id"].as_str().expect("user_id").try_into().expect("user id");
        let client =
            HomeserverClient::new(&self.url, Auth::User(boardroom::config::Secret::new(token)))
                .expect("client")
                .with_retry(RetryPolicy::SHORT);
        User { user_id, client, token: token.to_owned() }
    }
}

impl Synapse {
    /// Stops the homeserver (SIGTERM by pid, SIGKILL if it lingers) and keeps its directory:
    /// Boardroom finds nobody at the URL afterwards, as in an outage.
    pub(crate) fn stop_for_outage(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Synapse {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM by pid, then reap; SIGKILL if it lingers.
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new(synapse_python())
            .arg(project_root().join(SYNAPSE_SCRIPT))
            .args(["clean", "--dir"])
            .arg(self.dir.path())
            .status();
    }
}

/// The smallest valid config, for the binary's commands that reach no homeserver; its
/// database path is `/tmp/boardroom-cli-test` (replace it for a real one).
pub(crate) const MINIMAL_CONFIG: &str = r#"
[homeserver]
url = "http://127.0.0.1:8008"
server_name = "example.org"
[appservice]
url = "http://127.0.0.1:9009"
as_token = "as-secret-token"
hs_token = "hs-secret-token"
[database]
path = "/tmp/boardroom-cli-test"
"#;

/// Writes [`MINIMAL_CONFIG`] at `path`, its database at `db`.
pub(crate) fn write_minimal_config(path: &Path, db: &Path) {
    let text = MINIMAL_CONFIG.replace("/tmp/boardroom-cli-test", db.to_str().expect("utf-8 path"));
    std::fs::write(path, text).expect("write config");
}

/// In `dir`: a database path `db` (not created) and a [`MINIMAL_CONFIG`] naming it.
pub(crate) fn minimal_config_in(dir: &Path) -> (PathBuf, PathBuf) {
    let (db, path) = (dir.join("db"), dir.join("boardroom.toml"));
    write_minimal_config(&path, &db);
    (db, path)
}

/// A Boardroom config for tests: loopback, a temporary database.
pub(crate) fn test_config(hs_url: &str, listen: SocketAddr, db: &Path, extra: &str) -> Config {
    let text = format!(
        r#"
        [homeserver]
        url = "{hs_url}"
        server_name = "{SERVER_NAME}"
        [appservice]
        id = "boardroom-test"
        listen = "{listen}"
        url = "http://{listen}"
        as_token = "as-{rand}"
        hs_token = "hs-{rand}"
        [database]
        path = "{db}"
        [logging]
        level = "info,boardroom=debug"
        {extra}
        "#,
        rand = free_port(),
        db = db.display(),
    );
    Config::from_toml_with_env(&text, std::iter::empty()).expect("test config")
}

/// Boardroom running in this process; `stop` shuts it down like SIGTERM would.
pub(crate) struct Boardroom {
    /// The config it runs with.
    pub(crate) settings: Settings,
    /// Where its config file is.
    pub(crate) config_path: PathBuf,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
    app: Option<boardroom::app::App>,
}

impl Boardroom {
    /// Starts serving on `settings.listen`.
    pub(crate) async fn start(settings: Settings, config_path: PathBuf) -> Boardroom {
        let listener = boardroom::app::listen(settings.listen).expect("bind boardroom");
        Self::start_on(listener, settings, config_path).await
    }

    /// Starts serving on `listener` (bound to `settings.listen`), never let go of in
    /// between: no connection made meanwhile elsewhere (a client's ephemeral port) takes it.
    pub(crate) async fn start_on(
        listener: tokio::net::TcpListener,
        settings: Settings,
        config_path: PathBuf,
    ) -> Boardroom {
        init_tracing();
        let shutdown = CancellationToken::new();
        let app = boardroom::app::App::new(settings.clone()).expect("open boardroom");
        let token = shutdown.clone();
        let served = app.clone();
        let task = tokio::spawn(async move {
            if let Err(e) = boardroom::app::serve_app(served, listener, token).await {
                panic!("boardroom failed: {e}");
            }
        });
        Boardroom { settings, config_path, shutdown, task: Some(task), app: Some(app) }
    }

    /// The running Boardroom's store (to look at its index).
    pub(crate) fn store(&self) -> &boardroom::store::Store {
        &self.app.as_ref().expect("boardroom is running").ctx.store
    }

    /// The running Boardroom's processing context (to run a handler directly).
    pub(crate) fn ctx(&self) -> &boardroom::context::Context {
        &self.app.as_ref().expect("boardroom is running").ctx
    }

    /// The running Boardroom (to build its API router with other settings).
    pub(crate) fn app(&self) -> &boardroom::app::App {
        self.app.as_ref().expect("boardroom is running")
    }

    /// Stops it and waits until it has.
    pub(crate) async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.task.take() {
            t.await.expect("boardroom task");
        }
        // Our clone holds the database open too.
        self.app = None;
    }

    /// The bot's user id.
    pub(crate) fn bot(&self) -> &UserId {
        &self.settings.bot_user_id
    }
}

impl Drop for Boardroom {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,boardroom=info")),
        )
        .with_test_writer()
        .try_init();
}

/// Synapse running with Boardroom's registration, and what Boardroom is to run with: its
/// config (written to `config_path`) and its port, bound and held until Boardroom takes it.
pub(crate) struct Prepared {
    pub(crate) synapse: Synapse,
    pub(crate) config: Config,
    pub(crate) config_path: PathBuf,
    /// Holds the database, config and registration.
    pub(crate) dir: tempfile::TempDir,
    /// Boardroom's port, bound here so that nothing running beside the test takes it.
    pub(crate) reserved: std::net::TcpListener,
}

impl Prepared {
    /// Writes a config, has `boardroom registration` (the real binary) print the
    /// registration, and starts Synapse with it.
    pub(crate) async fn start(
        extra_config: &str,
        synapse_args: &[&str],
        db: Option<&Path>,
    ) -> Self {
        let dir = tempfile::Builder::new().prefix("boardroom-it-").tempdir().expect("tempdir");
        let reserved = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        let listen: SocketAddr = reserved.local_addr().expect("addr");
        let db = db.map_or_else(|| dir.path().join("db"), Path::to_path_buf);
        let config_path = dir.path().join("boardroom.toml");
        let reg_path = dir.path().join("registration.yaml");
        let mut attempts = 0;
        loop {
            attempts += 1;
            let hs_port = free_port();
            let hs_url = format!("http://127.0.0.1:{hs_port}");
            let config = test_config(&hs_url, listen, &db, extra_config);
            std::fs::write(&config_path, toml::to_string(&config).expect("toml"))
                .expect("write config");
            let registration = registration_from_binary(&config_path);
            std::fs::write(&reg_path, registration).expect("write registration");
            let synapse_dir =
                tempfile::Builder::new().prefix("boardroom-synapse-").tempdir().expect("tempdir");
            let mut synapse = Synapse {
                child: None,
                dir: synapse_dir,
                url: hs_url,
                registrations: vec![reg_path.clone()],
            };
            match synapse.spawn(hs_port, synapse_args).await {
                Ok(()) => return Prepared { synapse, config, config_path, dir, reserved },
                Err(PortTaken) if attempts < 5 => {
                    eprintln!("harness: port {hs_port} was taken by another process; another");
                }
                Err(PortTaken) => panic!("no free port for Synapse in 5 attempts"),
            }
        }
    }
}

/// Synapse and Boardroom wired together, as a deployment would be.
pub(crate) struct Stack {
    /// Dropped last: Boardroom talks to it.
    pub(crate) synapse: Synapse,
    /// Boardroom.
    pub(crate) boardroom: Boardroom,
    /// Holds the database and config.
    _dir: tempfile::TempDir,
}

impl Stack {
    /// Writes a config, has `boardroom registration` (the real binary) print the
    /// registration, starts Synapse with it, then starts Boardroom.
    pub(crate) async fn start(extra_config: &str) -> Stack {
        Self::start_with(extra_config, &[]).await
    }

    /// [`Stack::start`], with extra arguments for `scripts/synapse.py run`.
    pub(crate) async fn start_with(extra_config: &str, synapse_args: &[&str]) -> Stack {
        Self::start_with_db(extra_config, synapse_args, None).await
    }

    /// [`Stack::start_with`], with Boardroom's database at `db` when given (else in the
    /// stack's temporary directory).
    pub(crate) async fn start_with_db(
        extra_config: &str,
        synapse_args: &[&str],
        db: Option<&Path>,
    ) -> Stack {
        let Prepared { synapse, config, config_path, dir, reserved } =
            Prepared::start(extra_config, synapse_args, db).await;
        let settings = config.validate().expect("valid config");
        reserved.set_nonblocking(true).expect("nonblocking");
        let listener = tokio::net::TcpListener::from_std(reserved).expect("the reserved port");
        let boardroom = Boardroom::start_on(listener, settings, config_path).await;
        Stack { synapse, boardroom, _dir: dir }
    }

    /// Stops Boardroom and starts it again on the same port and database.
    pub(crate) async fn restart_boardroom(&mut self) {
        self.boardroom.stop().await;
        self.boardroom =
            Boardroom::start(self.boardroom.settings.clone(), self.boardroom.config_path.clone())
                .await;
    }
}

impl Synapse {
    /// Starts the stopped Synapse again: same port, directory, database and registrations.
    pub(crate) async fn start_again(&mut self) {
        let port: u16 = self
            .url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("the port of Synapse's url");
        self.spawn(port, &[])
            .await
            .unwrap_or_else(|_| panic!("port {port} of the stopped Synapse was taken meanwhile"));
    }

    /// Stops Synapse (SIGTERM by pid) and waits until it has exited; its directory and
    /// database stay, for [`Stack::start_synapse_again`].
    pub(crate) async fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            terminate(child).await;
        }
    }
}

/// SIGTERM to `child` (by its pid), and waits up to 30 s for it to exit; SIGKILL after
/// that. Whether it exited by itself.
pub(crate) async fn terminate(mut child: Child) -> bool {
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

impl Stack {
    /// Stops Synapse; Boardroom keeps running.
    pub(crate) async fn stop_synapse(&mut self) {
        self.synapse.stop().await;
    }

    /// Starts the stopped Synapse again: same port, directory, database and registration.
    pub(crate) async fn start_synapse_again(&mut self) {
        self.synapse.start_again().await;
    }

    /// Stops Boardroom and starts it again on the same database, sending its requests to
    /// `hs_url` (a stand-in in front of Synapse) instead; Synapse still pushes to it.
    pub(crate) async fn restart_boardroom_via(&mut self, hs_url: &str) {
        self.boardroom.stop().await;
        let mut settings = self.boardroom.settings.clone();
        settings.homeserver_url = hs_url.to_owned();
        self.boardroom = Boardroom::start(settings, self.boardroom.config_path.clone()).await;
    }
}

/// Runs `boardroom registration --config <path>` and returns what it printed.
pub(crate) fn registration_from_binary(config_path: &Path) -> String {
    let out = Command::new(boardroom_exe())
        .arg("registration")
        .arg("--config")
        .arg(config_path)
        .output()
        .expect("run boardroom registration");
    assert!(out.status.success(), "registration failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8")
}

/// A Matrix user acting through the client-server API.
pub(crate) struct User {
    /// Who.
    pub(crate) user_id: OwnedUserId,
    /// Their client.
    pub(crate) client: HomeserverClient,
    /// Their access token (for Boardroom's API).
    pub(crate) token: String,
}

impl User {
    /// Creates a private room and invites `invitees`.
    pub(crate) async fn create_room(&self, invitees: &[&UserId]) -> OwnedRoomId {
        let mut req = create_room::v3::Request::new();
        req.invite = invitees.iter().map(|u| (*u).to_owned()).collect();
        req.is_direct = invitees.len() == 1;
        req.preset = Some(create_room::v3::RoomPreset::TrustedPrivateChat);
        self.client.send(req, None).await.expect("create room").room_id
    }

    /// Joins `room` (by id or alias); the homeserver's refusal as an error.
    pub(crate) async fn join(&self, room: &str) -> Result<OwnedRoomId, boardroom::matrix::HsError> {
        let target: ruma::OwnedRoomOrAliasId = room.try_into().expect("room id or alias");
        let req = ruma::api::client::membership::join_room_by_id_or_alias::v3::Request::new(target);
        self.client.send(req, None).await.map(|r| r.room_id)
    }

    /// The room an alias points to.
    pub(crate) async fn resolve(&self, alias: &str) -> OwnedRoomId {
        let alias: ruma::OwnedRoomAliasId = alias.try_into().expect("alias");
        let req = ruma::api::client::alias::get_alias::v3::Request::new(alias.clone());
        self.client.send(req, None).await.unwrap_or_else(|e| panic!("resolve {alias}: {e}")).room_id
    }

    /// The content of a state event, if set.
    pub(crate) async fn state(
        &self,
        room: &RoomId,
        ty: &str,
        key: &str,
    ) -> Option<serde_json::Value> {
        let req = ruma::api::client::state::get_state_event_for_key::v3::Request::new(
            room.to_owned(),
            ty.into(),
            key.to_owned(),
        );
        let resp = self.client.send(req, None).await.ok()?;
        serde_json::from_str(resp.event_or_content.get()).ok()
    }

    /// Sends a command and waits for the bot's reply to it; returns the reply's text.
    pub(crate) async fn command(&self, room: &RoomId, bot: &UserId, text: &str) -> String {
        let event = self.say(room, text).await;
        self.wait_for(room, Duration::from_secs(30), &format!("the reply to {text}"), |ev| {
            replies_to(ev, bot, &event).first().map(|m| m.content.body().to_owned())
        })
        .await
    }

    /// Sends a text message in the thread of `root`; returns its event id.
    pub(crate) async fn say_in_thread(
        &self,
        room: &RoomId,
        root: &ruma::EventId,
        body: &str,
    ) -> OwnedEventId {
        let mut content = RoomMessageEventContent::text_plain(body);
        content.relates_to = Some(ruma::events::room::message::Relation::Thread(
            ruma::events::relation::Thread::plain(root.to_owned(), root.to_owned()),
        ));
        self.send(room, content).await
    }

    /// Sends a command in the thread of `root` and waits for the bot's answer to it.
    pub(crate) async fn command_in_thread(
        &self,
        room: &RoomId,
        root: &ruma::EventId,
        bot: &UserId,
        text: &str,
    ) -> String {
        let event = self.say_in_thread(room, root, text).await;
        self.wait_for(room, Duration::from_secs(30), &format!("the answer to {text}"), |ev| {
            replies_to(ev, bot, &event).first().map(|m| m.content.body().to_owned())
        })
        .await
    }

    /// Sends a message; returns its event id.
    pub(crate) async fn send(
        &self,
        room: &RoomId,
        content: RoomMessageEventContent,
    ) -> OwnedEventId {
        let req = send_message_event::v3::Request::new(
            room.to_owned(),
            ruma::TransactionId::new(),
            &content,
        )
        .expect("request");
        self.client.send(req, None).await.expect("send").event_id
    }

    /// Sends a plain text message.
    pub(crate) async fn say(&self, room: &RoomId, body: &str) -> OwnedEventId {
        self.send(room, RoomMessageEventContent::text_plain(body)).await
    }

    /// The room's latest events, oldest first.
    pub(crate) async fn timeline(&self, room: &RoomId) -> Vec<Raw<AnyTimelineEvent>> {
        let mut req = get_message_events::v3::Request::backward(room.to_owned());
        req.limit = 200u32.into();
        let mut chunk = self.client.send(req, None).await.expect("messages").chunk;
        chunk.reverse();
        chunk
    }

    /// Polls the timeline until `pick` finds something, or panics after `timeout`.
    pub(crate) async fn wait_for<T>(
        &self,
        room: &RoomId,
        timeout: Duration,
        what: &str,
        mut pick: impl FnMut(&[AnyTimelineEvent]) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            let events: Vec<AnyTimelineEvent> =
                self.timeline(room).await.iter().filter_map(|r| r.deserialize().ok()).collect();
            if let Some(t) = pick(&events) {
                return t;
            }
            assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until `member` has `membership` in `room`; returns the membership's reason.
    pub(crate) async fn wait_for_membership(
        &self,
        room: &RoomId,
        member: &UserId,
        membership: MembershipState,
    ) -> Option<String> {
        self.wait_for(
            room,
            Duration::from_secs(15),
            &format!("{member} to be {membership}"),
            |events| {
                events.iter().rev().find_map(|e| match e {
                    AnyTimelineEvent::State(AnyStateEvent::RoomMember(StateEvent::Original(
                        ev,
                    ))) if ev.state_key == member => Some(
                        (ev.content.membership == membership).then(|| ev.content.reason.clone()),
                    ),
                    _ => None,
                })?
            },
        )
        .await
    }
}

/// The bot's messages in `events` that reply to `command` (in a thread or not).
pub(crate) fn replies_to<'a>(
    events: &'a [AnyTimelineEvent],
    bot: &UserId,
    command: &ruma::EventId,
) -> Vec<&'a ruma::events::room::message::OriginalRoomMessageEvent> {
    use ruma::events::room::message::Relation;
    events
        .iter()
        .filter_map(|e| match e {
            AnyTimelineEvent::MessageLike(AnyMessageLikeEvent::RoomMessage(
                MessageLikeEvent::Original(m),
            )) if m.sender == bot => {
                let target = match &m.content.relates_to {
                    Some(Relation::Reply(r)) => Some(&r.in_reply_to.event_id),
                    Some(Relation::Thread(t)) => t.in_reply_to.as_ref().map(|r| &r.event_id),
                    _ => None,
                };
                (target.map(|t| t.as_ref()) == Some(command)).then_some(m)
            }
            _ => None,
        })
        .collect()
}

/// The board `launch` most end-to-end tests start from: Alice (a board creator in the
/// config) creates it from a direct chat with the bot and joins its space, `general` and
/// `tasks`; she invites Bob, who joins all three and is a member by Boardroom's index.
/// Carol is on the homeserver, not on the board.
pub(crate) struct Launch {
    pub(crate) stack: Stack,
    pub(crate) alice: User,
    pub(crate) bob: User,
    pub(crate) carol: User,
    pub(crate) general: OwnedRoomId,
    pub(crate) tasks: OwnedRoomId,
    /// The HTTP API's base URL.
    pub(crate) api: String,
}

impl Launch {
    pub(crate) async fn start(config: &str) -> Launch {
        let stack = Stack::start(config).await;
        let bot = stack.boardroom.bot().to_owned();
        let Board { alice, bob, carol, general, tasks } =
            Board::create(&stack.synapse, &bot, "launch", "Launch").await;
        let api = format!("http://{}/_boardroom/api/v1", stack.boardroom.settings.listen);
        Launch { stack, alice, bob, carol, general, tasks, api }
    }
}

/// A board as [`Launch`] makes it, on any running Boardroom: Alice (a board creator)
/// creates it from a direct chat with the bot and joins its space, `general` and `tasks`;
/// she invites Bob, who joins all three. Carol is on the homeserver, not on the board.
pub(crate) struct Board {
    pub(crate) alice: User,
    pub(crate) bob: User,
    pub(crate) carol: User,
    pub(crate) general: OwnedRoomId,
    pub(crate) tasks: OwnedRoomId,
}

impl Board {
    pub(crate) async fn create(synapse: &Synapse, bot: &UserId, slug: &str, name: &str) -> Board {
        let alice = synapse.register("alice").await;
        let bob = synapse.register("bob").await;
        let carol = synapse.register("carol").await;
        let dm = alice.create_room(&[bot]).await;
        alice.wait_for_membership(&dm, bot, MembershipState::Join).await;
        alice.command(&dm, bot, &format!("!board create {slug} {name}")).await;
        let alias = |room: &str| format!("#boardroom_{slug}{room}:{SERVER_NAME}");
        let space = alice.join(&alias("")).await.expect("space");
        let general = alice.join(&alias("-general")).await.expect("general");
        let tasks = alice.join(&alias("-tasks")).await.expect("tasks");
        let reply = alice.command(&general, bot, "!board invite @bob:localhost").await;
        assert!(reply.contains("Invited @bob:localhost"), "{reply}");
        bob.join(space.as_str()).await.expect("bob joins the space");
        bob.join(tasks.as_str()).await.expect("bob joins tasks");
        bob.join(general.as_str()).await.expect("bob joins general");
        // Rooms are processed in lanes of their own: a command in `general` may come
        // before Bob's join of the space is indexed. Ask again until it is (bounded).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let info = bob.command(&general, bot, "!board info").await;
            if info.contains("@bob:localhost (member)") {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{info}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Board { alice, bob, carol, general, tasks }
    }
}

/// Boardroom as its own process (`boardroom serve`), as an admin runs it: killed with
/// SIGKILL and started again on the same port, database and config. Its output is
/// appended to `log`.
pub(crate) struct Process {
    pub(crate) settings: Settings,
    pub(crate) config_path: PathBuf,
    pub(crate) log: PathBuf,
    child: Option<Child>,
}

impl Process {
    /// Starts `boardroom serve` with the config at `config_path` (`config`), its output
    /// to `log`, and waits until it answers. `reserved`, the port held for it, is let go of
    /// just before.
    pub(crate) async fn start(
        config: &Config,
        config_path: &Path,
        log: PathBuf,
        reserved: std::net::TcpListener,
    ) -> Process {
        let settings = config.clone().validate().expect("valid config");
        let mut p = Process { settings, config_path: config_path.to_owned(), log, child: None };
        drop(reserved);
        p.spawn().await;
        p
    }

    /// Starts the process again (it must not be running) and waits until it answers.
    pub(crate) async fn spawn(&mut self) {
        assert!(self.child.is_none(), "boardroom is running");
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open the log");
        let err = out.try_clone().expect("log handle");
        let child = Command::new(boardroom_exe())
            .args(["serve", "--config"])
            .arg(&self.config_path)
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start boardroom serve");
        self.child = Some(child);
        let url = format!("http://{}/_boardroom/api/v1/openapi.json", self.settings.listen);
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if http.get(&url).send().await.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("boardroom exited with {status}; log:\n{}", self.log_tail(40));
            }
            assert!(Instant::now() < deadline, "boardroom did not answer within 60 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL, and waits until the process is gone.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, and waits until the process has exited by itself.
    pub(crate) async fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            assert!(terminate(child).await, "boardroom did not stop within 30 s of SIGTERM");
        }
    }

    /// Sends it `signal` (a name `kill` knows: `HUP`, …).
    pub(crate) fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("boardroom is running").id();
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {pid}: {status}");
    }

    /// The last `lines` lines of its output.
    pub(crate) fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The bot's user id.
    pub(crate) fn bot(&self) -> &UserId {
        &self.settings.bot_user_id
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port another process bound after it was chosen: Synapse cannot listen there and
/// exits, and the harness takes that as a taken port (and chooses another) rather than
/// as Synapse failing.
#[tokio::test]
async fn synapse_on_a_port_already_bound_is_a_taken_port() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = taken.local_addr().expect("its address").port();
    let mut synapse = Synapse {
        child: None,
        dir: tempfile::Builder::new().prefix("boardroom-synapse-").tempdir().expect("tempdir"),
        url: format!("http://127.0.0.1:{port}"),
        registrations: Vec::new(),
    };
    let started = synapse.spawn(port, &[]).await;
    assert!(matches!(started, Err(PortTaken)), "{started:?}");
    assert!(synapse.child.is_none(), "the Synapse that could not listen has exited");
    drop(taken);
}
