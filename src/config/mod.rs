//! Configuration: one TOML file, environment overrides, tokens inline or from a file.
//!
//! The doc comment on each field is the documentation of the same key in
//! `config.example.toml`; a test fails when the two files' keys drift apart.

use std::{fmt, path::PathBuf};

use serde::{Deserialize, Serialize};

mod settings;

pub use settings::{
    Access, ApiClient, Reloaded, Settings, WebhookSource, glob_match, parse_public_key,
};

/// Prefix of environment variables that override config keys:
/// `BOARDROOM__<SECTION>__<KEY>`, for example `BOARDROOM__HOMESERVER__URL`.
pub const ENV_PREFIX: &str = "BOARDROOM__";

/// The whole configuration file.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The homeserver Boardroom extends.
    pub homeserver: HomeserverConfig,
    /// How Boardroom is registered with the homeserver and where it listens.
    pub appservice: AppserviceConfig,
    /// Where Boardroom keeps its RocksDB database.
    pub database: DatabaseConfig,
    /// Who may do what.
    #[serde(default)]
    pub permissions: PermissionsConfig,
    /// Logging.
    #[serde(default)]
    pub logging: LoggingConfig,
    /// The HTTP API for bots and task apps.
    #[serde(default)]
    pub api: ApiConfig,
    /// Limits on the HTTP connections Boardroom serves.
    #[serde(default)]
    pub http: HttpConfig,
    /// The threads that serve requests and process events.
    #[serde(default)]
    pub runtime: RuntimeConfig,
    /// Signed webhooks: task apps and CI push task changes without a token.
    #[serde(default)]
    pub webhooks: WebhooksConfig,
    /// The boards' live streams.
    #[serde(default)]
    pub live: LiveConfig,
    /// End-to-end encryption.
    #[serde(default)]
    pub encryption: EncryptionConfig,
    /// Prometheus metrics.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// What `GET /_boardroom/ready` asks for.
    #[serde(default)]
    pub health: HealthConfig,
    /// The keys set by `BOARDROOM__…` environment variables (`section.key` and the
    /// variable's name), so that a mistake in one is reported against the variable.
    #[serde(skip)]
    pub from_env: Vec<(String, String)>,
}

/// `[health]`: when `GET /_boardroom/ready` says Boardroom is not ready.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// Not ready when the oldest event waiting to be processed has waited longer (seconds).
    #[serde(default = "default_max_queue_age_secs", deserialize_with = "de_u64")]
    pub max_queue_age_secs: u64,
    /// Not ready when the homeserver has not answered for longer (seconds). It is asked
    /// every 10 s, every second while it does not answer.
    #[serde(default = "default_max_homeserver_silence_secs", deserialize_with = "de_u64")]
    pub max_homeserver_silence_secs: u64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            max_queue_age_secs: default_max_queue_age_secs(),
            max_homeserver_silence_secs: default_max_homeserver_silence_secs(),
        }
    }
}

fn default_max_queue_age_secs() -> u64 {
    300
}
fn default_max_homeserver_silence_secs() -> u64 {
    60
}

/// `[metrics]`: Prometheus metrics at `GET /metrics`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve `GET /metrics` on this address and port, a listener of its own (keep it
    /// where only the scraper reaches it). Unset: no metrics listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
}

/// `[encryption]`: the bot's device for end-to-end encrypted rooms.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptionConfig {
    /// Give the bot a device with its own identity keys, kept current from the to-device
    /// messages, device-list changes and one-time-key counts the homeserver puts in its
    /// transactions (MSC2409, MSC3202; the device made through MSC4190). The homeserver
    /// must have them on (Synapse: `experimental_features` `msc2409_to_device_messages_enabled`
    /// and `msc3202_transaction_extensions`), and the registration says so when this is on.
    #[serde(default)]
    pub enabled: bool,
    /// The bot's device id.
    #[serde(default = "default_device_id")]
    pub device_id: String,
    /// The directory of the crypto store (a SQLite database of the device's keys and
    /// sessions). Back it up with the database: losing it means a new device. Default:
    /// the database's path with `-crypto` appended.
    #[serde(default)]
    pub store_path: Option<PathBuf>,
    /// Create new board rooms (`general`, `tasks`, added rooms; not the space)
    /// end-to-end encrypted. Needs `enabled`.
    #[serde(default)]
    pub encrypt_new_rooms: bool,
    /// Which devices of a room's members get the bot's room keys (can read what it says):
    /// `all` (every device not blacklisted), `cross_signed` (devices signed by their
    /// owner's cross-signing identity: MSC4153's recommendation; a member without one gets
    /// nothing), or `verified` (devices verified by the bot, or signed by an identity it
    /// verified; the bot verifies nobody by itself, so in practice none).
    #[serde(default)]
    pub share_keys_with: ShareKeysWith,
}

/// `encryption.share_keys_with`.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ShareKeysWith {
    /// Every device not blacklisted.
    #[default]
    All,
    /// Devices signed by their owner's cross-signing identity.
    CrossSigned,
    /// Devices the bot trusts (verified).
    Verified,
}

fn default_device_id() -> String {
    "BOARDROOM".into()
}

impl Default for EncryptionConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            device_id: default_device_id(),
            store_path: None,
            encrypt_new_rooms: false,
            share_keys_with: ShareKeysWith::All,
        }
    }
}

impl EncryptionConfig {
    /// Where the crypto store is: `store_path`, or the database's path with `-crypto`.
    pub fn store_dir(&self, database: &std::path::Path) -> PathBuf {
        self.store_path.clone().unwrap_or_else(|| {
            let mut name = database.as_os_str().to_owned();
            name.push("-crypto");
            PathBuf::from(name)
        })
    }
}

/// `[live]`: the boards' live streams (Server-Sent Events) and their event logs.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LiveConfig {
    /// Days a board's logged events are kept for resuming streams; a resume from before
    /// gets a `reset`.
    #[serde(default = "default_retention_days", deserialize_with = "de_u64")]
    pub retention_days: u64,
    /// Events kept per board, at most (the oldest go first).
    #[serde(default = "default_max_events_per_board", deserialize_with = "de_u64")]
    pub max_events_per_board: u64,
    /// How many events a subscriber may fall behind before it is disconnected (it resumes
    /// by id and loses nothing).
    #[serde(default = "default_buffer_events", deserialize_with = "de_u64")]
    pub buffer_events: u64,
    /// Streams served at once, over all listeners and boards. A stream does not count
    /// against `http.max_connections`.
    #[serde(default = "default_max_subscribers", deserialize_with = "de_u64")]
    pub max_subscribers: u64,
    /// Streams one user (a Matrix user, or a client's virtual user) may hold open at
    /// once; past it, 429 `M_LIMIT_EXCEEDED`.
    #[serde(default = "default_max_streams_per_user", deserialize_with = "de_u64")]
    pub max_streams_per_user: u64,
    /// Seconds between keep-alive comments on an idle stream (at most half of
    /// `http.idle_timeout_secs` is used).
    #[serde(default = "default_keepalive_secs", deserialize_with = "de_u64")]
    pub keepalive_secs: u64,
}

impl Default for LiveConfig {
    fn default() -> Self {
        Self {
            retention_days: default_retention_days(),
            max_events_per_board: default_max_events_per_board(),
            buffer_events: default_buffer_events(),
            max_subscribers: default_max_subscribers(),
            max_streams_per_user: default_max_streams_per_user(),
            keepalive_secs: default_keepalive_secs(),
        }
    }
}

fn default_retention_days() -> u64 {
    7
}
fn default_max_events_per_board() -> u64 {
    100_000
}
fn default_buffer_events() -> u64 {
    1024
}
fn default_max_subscribers() -> u64 {
    10_000
}
fn default_max_streams_per_user() -> u64 {
    20
}
fn default_keepalive_secs() -> u64 {
    15
}

/// `[webhooks]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhooksConfig {
    /// Senders of signed webhooks (`POST /_boardroom/webhooks/v1/<name>`), each with its
    /// ed25519 public key and its boards.
    #[serde(default)]
    pub sources: Vec<WebhookSourceConfig>,
    /// Deliveries a second each source may make, counted once their signature holds (so
    /// that nobody without the key can use up a source's rate). Past it: 429
    /// `M_LIMIT_EXCEEDED` with `retry_after_ms`. 0: no limit.
    #[serde(default = "default_deliveries_per_second", deserialize_with = "de_u64")]
    pub deliveries_per_second: u64,
    /// Deliveries a source may make at once above the rate, after a quiet spell.
    #[serde(default = "default_delivery_burst", deserialize_with = "de_u64")]
    pub delivery_burst: u64,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            sources: Vec::new(),
            deliveries_per_second: default_deliveries_per_second(),
            delivery_burst: default_delivery_burst(),
        }
    }
}

fn default_deliveries_per_second() -> u64 {
    10
}
fn default_delivery_burst() -> u64 {
    50
}

/// `[[webhooks.sources]]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSourceConfig {
    /// The source's name: the last segment of its URL, and the owner of the virtual users
    /// it acts as (shared with an `[[api.clients]]` entry of the same name). 1 to 64 of
    /// a-z 0-9 . _ -
    pub name: String,
    /// The sender's ed25519 public key, 32 bytes in base64 (`boardroom webhook-keygen`
    /// prints one). Set this or `public_key_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// A file holding `public_key` (surrounding whitespace is ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_file: Option<PathBuf>,
    /// The board slugs it may act on; `"*"` for every board. Must not be empty.
    #[serde(default)]
    pub boards: Vec<String>,
    /// The most virtual users it may own (counted with those of an API client of the same
    /// name); a delivery naming a new `actor` past this number is refused (403).
    #[serde(default = "default_max_virtual_users")]
    pub max_virtual_users: u64,
}

/// `[runtime]`: Boardroom's async worker threads, which serve every request and process
/// the events (RocksDB's flushes and compactions, and the blocking pool, have threads of
/// their own).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// How many; 0: one per CPU core (or as many as `TOKIO_WORKER_THREADS` says, when it is
    /// set).
    #[serde(default, deserialize_with = "de_u64")]
    pub worker_threads: u64,
}

/// `[http]`: timeouts and the connection cap, applied to every listener.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Seconds a client has to send a request's head (request line and headers), from its
    /// first byte; a slower one is disconnected.
    #[serde(default = "default_header_read_timeout", deserialize_with = "de_u64")]
    pub header_read_timeout_secs: u64,
    /// Seconds a client has to send a request's whole body, from the end of its head; a
    /// slower one is answered 400 and disconnected.
    #[serde(default = "default_body_read_timeout", deserialize_with = "de_u64")]
    pub body_read_timeout_secs: u64,
    /// Seconds a connection may wait for its next request (after it is accepted, or after
    /// the previous response) before it is closed.
    #[serde(default = "default_idle_timeout", deserialize_with = "de_u64")]
    pub idle_timeout_secs: u64,
    /// Connections served at once on each listener. Further connections wait in the
    /// kernel's accept queue (not accepted, no file descriptor) until one closes.
    #[serde(default = "default_max_connections", deserialize_with = "de_u64")]
    pub max_connections: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            header_read_timeout_secs: default_header_read_timeout(),
            body_read_timeout_secs: default_body_read_timeout(),
            idle_timeout_secs: default_idle_timeout(),
            max_connections: default_max_connections(),
        }
    }
}

fn default_header_read_timeout() -> u64 {
    10
}
fn default_body_read_timeout() -> u64 {
    60
}
fn default_idle_timeout() -> u64 {
    60
}
fn default_max_connections() -> u64 {
    512
}

/// A whole number, from TOML or from an environment override (which arrives as a string).
fn de_u64<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumberOrText {
        Number(u64),
        Text(String),
    }
    match NumberOrText::deserialize(d)? {
        NumberOrText::Number(n) => Ok(n),
        NumberOrText::Text(t) => t.trim().parse().map_err(|_| {
            serde::de::Error::custom(format!("`{t}` is not a whole number of at least 0"))
        }),
    }
}

/// `[api]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Serve the HTTP API on this address and port, apart from the appservice API (which
    /// stays on `appservice.listen`), each listener with its own connection cap, so that
    /// API traffic cannot starve the homeserver's transactions. Unset: both on
    /// `appservice.listen`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// Bots and task apps that call the API with a client token, acting as virtual users.
    #[serde(default)]
    pub clients: Vec<ApiClientConfig>,
    /// Requests a second each caller may make: each client token (all its virtual users
    /// together) and each Matrix user. Past it: 429 `M_LIMIT_EXCEEDED` with
    /// `retry_after_ms`. 0: no limit.
    #[serde(default = "default_requests_per_second", deserialize_with = "de_u64")]
    pub requests_per_second: u64,
    /// Requests a caller may make at once above the rate, after a quiet spell.
    #[serde(default = "default_request_burst", deserialize_with = "de_u64")]
    pub request_burst: u64,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: None,
            clients: Vec::new(),
            requests_per_second: default_requests_per_second(),
            request_burst: default_request_burst(),
        }
    }
}

fn default_requests_per_second() -> u64 {
    50
}
fn default_request_burst() -> u64 {
    200
}

/// `[[api.clients]]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiClientConfig {
    /// The client's name, for logs.
    pub name: String,
    /// Its bearer token. Set this or `token_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    /// A file holding `token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// The board slugs it may act on; `"*"` for every board.
    #[serde(default)]
    pub boards: Vec<String>,
    /// The most virtual users it may own. A virtual user belongs to the client that used
    /// it first; a request naming a new one past this number is refused (403) before
    /// anything reaches the homeserver.
    #[serde(default = "default_max_virtual_users")]
    pub max_virtual_users: u64,
    /// Whether it may create boards (`POST /boards`); its virtual user becomes the new
    /// board's owner.
    #[serde(default)]
    pub create_boards: bool,
}

/// Default of `api.clients[].max_virtual_users`.
pub const DEFAULT_MAX_VIRTUAL_USERS: u64 = 1000;

fn default_max_virtual_users() -> u64 {
    DEFAULT_MAX_VIRTUAL_USERS
}

/// `[homeserver]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HomeserverConfig {
    /// The client-server API base URL of the homeserver, as Boardroom reaches it,
    /// for example `http://127.0.0.1:8008`.
    pub url: String,
    /// The homeserver's server name: the part after `:` in user ids, for example `example.org`.
    pub server_name: String,
}

/// `[appservice]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AppserviceConfig {
    /// The registration id; must match `id` in the registration file the homeserver loads.
    #[serde(default = "default_id")]
    pub id: String,
    /// The address and port Boardroom listens on (appservice API and HTTP API).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// How the homeserver reaches Boardroom, for example `http://127.0.0.1:9009`.
    pub url: String,
    /// The token Boardroom sends to the homeserver. Set this or `as_token_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_token: Option<Secret>,
    /// A file holding `as_token` (surrounding whitespace is ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_token_file: Option<PathBuf>,
    /// The token the homeserver sends to Boardroom. Set this or `hs_token_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hs_token: Option<Secret>,
    /// A file holding `hs_token` (surrounding whitespace is ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hs_token_file: Option<PathBuf>,
    /// The bot's localpart: the bot is `@<bot_localpart>:<server_name>`.
    #[serde(default = "default_bot_localpart")]
    pub bot_localpart: String,
    /// Prefix of the appservice's exclusive namespaces: virtual users `@<prefix>…` and
    /// board aliases `#<prefix>…`.
    #[serde(default = "default_namespace_prefix")]
    pub namespace_prefix: String,
    /// Entries waiting to be processed past which a transaction's answer is held (after
    /// its events are stored) until processing brings the queue back to it: a homeserver
    /// pushing faster than Boardroom processes slows to its pace. 0: never held.
    #[serde(default = "default_max_backlog", deserialize_with = "de_u64")]
    pub max_backlog: u64,
    /// Entries waiting on processing alone (all those waiting but the ones in rooms' own
    /// lanes, where a command can wait on the homeserver, and what its room sent after it
    /// with it) past which a transaction's answer is held until processing brings them
    /// back to it: the short bound that keeps the queue of a busy board short, while
    /// `max_backlog` bounds everything waiting. 0: never held on this count.
    #[serde(default = "default_max_ready_backlog", deserialize_with = "de_u64")]
    pub max_ready_backlog: u64,
    /// The longest a transaction's answer is held (seconds, 1 to 50: Synapse gives up on an
    /// answer after 60 s and backs off).
    #[serde(default = "default_backlog_hold_secs", deserialize_with = "de_u64")]
    pub backlog_hold_secs: u64,
}

fn default_max_backlog() -> u64 {
    10_000
}
fn default_max_ready_backlog() -> u64 {
    1_000
}
fn default_backlog_hold_secs() -> u64 {
    10
}

/// `[database]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// Directory of the RocksDB database; created if missing.
    pub path: PathBuf,
}

/// `[permissions]`
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PermissionsConfig {
    /// User-id globs (`*` matches any run of characters) of the users who may create boards
    /// and whose invites the bot accepts, for example `["@*:example.org"]`. Empty: nobody.
    #[serde(default)]
    pub board_creators: Vec<String>,
}

/// `[logging]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingConfig {
    /// A level (`trace`, `debug`, `info`, `warn`, `error`) or a `tracing` filter such as
    /// `info,boardroom=debug`. The `RUST_LOG` environment variable, when set, wins.
    #[serde(default = "default_level")]
    pub level: String,
    /// `pretty` for people, `json` for log collectors.
    #[serde(default)]
    pub format: LogFormat,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self { level: default_level(), format: LogFormat::default() }
    }
}

/// Log line format.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Pretty,
    /// One JSON object per line.
    Json,
}

fn default_id() -> String {
    "boardroom".to_owned()
}
fn default_listen() -> String {
    "127.0.0.1:9009".to_owned()
}
fn default_bot_localpart() -> String {
    "boardroom".to_owned()
}
fn default_namespace_prefix() -> String {
    "boardroom_".to_owned()
}
fn default_level() -> String {
    "info".to_owned()
}

/// A secret string: never printed by `Debug` or `Display`, compared in constant time.
#[derive(Clone, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Secret(String);

/// Compares two secrets in constant time (lengths included: both are hashed first): how
/// long a comparison takes tells nothing of how much of a secret matched.
pub(crate) fn secret_eq(a: &str, b: &str) -> bool {
    use sha2::Digest;
    use subtle::ConstantTimeEq;
    let ha = sha2::Sha256::digest(a.as_bytes());
    let hb = sha2::Sha256::digest(b.as_bytes());
    ha.as_slice().ct_eq(hb.as_slice()).into()
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        secret_eq(&self.0, &other.0)
    }
}

impl Eq for Secret {}

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The secret itself; call only where it is sent or compared.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Error, Result};

    #[test]
    fn secrets_compare_by_their_whole_value() {
        let s = |v: &str| Secret::new(v);
        assert_eq!(s("as-token-1"), s("as-token-1"));
        assert_ne!(s("as-token-1"), s("as-token-2"));
        assert_ne!(s("as-token-1"), s("as-token-1 "));
        assert_ne!(s(""), s("x"));
        assert_eq!(s(""), s(""));
    }

    const MINIMAL: &str = r#"
        [homeserver]
        url = "http://127.0.0.1:8008"
        server_name = "example.org"
        [appservice]
        url = "http://127.0.0.1:9009"
        as_token = "as-secret"
        hs_token = "hs-secret"
        [database]
        path = "/tmp/boardroom-test-db"
    "#;

    fn load(text: &str, vars: &[(&str, &str)]) -> Result<Config> {
        Config::from_toml_with_env(
            text,
            vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        )
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = load(MINIMAL, &[]).expect("parses");
        let s = c.validate().expect("valid");
        assert_eq!(s.bot_user_id.as_str(), "@boardroom:example.org");
        assert_eq!(c.appservice.namespace_prefix, "boardroom_");
        assert_eq!(c.logging.format, LogFormat::Pretty);
    }

    #[test]
    fn missing_key_is_named_with_its_section() {
        let text = MINIMAL.replace("url = \"http://127.0.0.1:8008\"", "");
        let err = load(&text, &[]).expect_err("must fail");
        match err {
            Error::Config { key, .. } => assert_eq!(key, "homeserver.url"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn env_overrides_win_and_parse_types() {
        let c = load(
            MINIMAL,
            &[
                ("BOARDROOM__HOMESERVER__URL", "http://hs.internal:8008"),
                ("BOARDROOM__PERMISSIONS__BOARD_CREATORS", r#"["@*:example.org"]"#),
                ("BOARDROOM__APPSERVICE__AS_TOKEN", "12345"),
                ("UNRELATED", "x"),
            ],
        )
        .expect("parses");
        assert_eq!(c.homeserver.url, "http://hs.internal:8008");
        assert_eq!(c.permissions.board_creators, vec!["@*:example.org"]);
        assert_eq!(c.appservice.as_token.as_ref().map(Secret::expose), Some("12345"));
    }

    #[test]
    fn unknown_key_is_refused_by_name() {
        let err = load(&format!("{MINIMAL}\n[logging]\nlevl = \"info\"\n"), &[]).expect_err("fail");
        assert!(err.to_string().contains("levl"), "{err}");
    }

    #[test]
    fn tokens_from_files_and_conflicts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("as");
        std::fs::write(&file, "  from-file\n").expect("write");
        let text = MINIMAL.replace(
            "as_token = \"as-secret\"",
            &format!("as_token_file = {:?}", file.display().to_string()),
        );
        let s = load(&text, &[]).expect("parses").validate().expect("valid");
        assert_eq!(s.as_token.expose(), "from-file");

        let both = MINIMAL.replace(
            "as_token = \"as-secret\"",
            &format!("as_token = \"x\"\nas_token_file = {:?}", file.display().to_string()),
        );
        let err = load(&both, &[]).expect("parses").validate().expect_err("both set");
        assert!(err.to_string().contains("not both"), "{err}");
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let c = load(MINIMAL, &[]).expect("parses");
        let s = c.validate().expect("valid");
        let printed = format!("{c:?} {s:?}");
        assert!(!printed.contains("as-secret") && !printed.contains("hs-secret"), "{printed}");
    }

    #[test]
    fn api_client_names_must_differ_and_the_virtual_user_cap_defaults_to_1000() {
        let one = "[[api.clients]]\nname = \"tracker\"\ntoken = \"t1\"\n";
        let s = load(&format!("{MINIMAL}\n{one}"), &[]).expect("parses").validate().expect("valid");
        assert_eq!(s.access().api_clients[0].max_virtual_users, DEFAULT_MAX_VIRTUAL_USERS);
        let twice =
            format!("{MINIMAL}\n{one}[[api.clients]]\nname = \"tracker\"\ntoken = \"t2\"\n");
        let err = load(&twice, &[]).expect("parses").validate().expect_err("same name");
        assert!(err.to_string().contains("api.clients[1].name"), "{err}");
    }

    #[test]
    fn a_reload_applies_clients_creators_and_level_and_names_what_needs_a_restart() {
        let settings = |extra: &str| {
            load(&format!("{MINIMAL}\n{extra}"), &[]).expect("parses").validate().expect("valid")
        };
        let client =
            |token: &str| format!("[[api.clients]]\nname = \"tracker\"\ntoken = \"{token}\"\n");
        let running = settings(&client("old-token"));
        let shared = running.clone();
        // The same file again: nothing changes.
        assert_eq!(running.reload_from(&settings(&client("old-token"))), Reloaded::default());

        let new = settings(&format!(
            "[logging]\nlevel = \"debug\"\n[permissions]\nboard_creators = [\"@ops:example.org\"]\n{}",
            client("new-token")
        ));
        let reloaded = running.reload_from(&new);
        assert_eq!(
            reloaded.applied,
            vec!["api.clients", "permissions.board_creators", "logging.level"]
        );
        assert!(reloaded.restart_needed.is_empty(), "{reloaded:?}");
        // Every clone sees it: the old token is gone, the new one is the client's.
        let access = shared.access();
        assert_eq!(access.api_clients.len(), 1);
        assert_eq!(access.api_clients[0].token.expose(), "new-token");
        assert_eq!(access.log_level, "debug");
        let ops = ruma::user_id!("@ops:example.org");
        assert!(shared.is_board_creator(ops));

        // Keys a running Boardroom cannot change are named, and keep their values.
        let moved = load(
            &format!("{MINIMAL}\n[live]\nkeepalive_secs = 3\n{}", client("new-token"))
                .replace("127.0.0.1:9009", "127.0.0.1:9010")
                .replace("hs-secret", "hs-other"),
            &[],
        )
        .expect("parses")
        .validate()
        .expect("valid");
        let reloaded = running.reload_from(&moved);
        assert_eq!(
            reloaded.restart_needed,
            vec!["appservice.hs_token", "appservice.url", "live.keepalive_secs"]
        );
        assert_eq!(running.hs_token.expose(), "hs-secret");
        assert_eq!(running.raw.live.keepalive_secs, default_keepalive_secs());
        // The creators and level of that file (none, info) apply: they are reloadable.
        assert_eq!(reloaded.applied, vec!["permissions.board_creators", "logging.level"]);
        assert!(!shared.is_board_creator(ops));
    }

    #[test]
    fn webhook_sources_need_a_name_an_ed25519_key_and_boards() {
        const KEY: &str = "psyHm9YaYkK9HSj1+eVJvMABSPyog2xuaRLZoAqklWs=";
        let source = |body: &str| format!("{MINIMAL}\n[[webhooks.sources]]\n{body}\n");
        let ok = format!("name = \"ci\"\npublic_key = \"{KEY}\"\nboards = [\"demo\"]");
        let s = load(&source(&ok), &[]).expect("parses").validate().expect("valid");
        assert_eq!(s.access().webhook_sources[0].name, "ci");
        assert_eq!(s.access().webhook_sources[0].max_virtual_users, DEFAULT_MAX_VIRTUAL_USERS);
        // Unpadded base64, and a key from a file.
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("ci.pub");
        std::fs::write(&file, format!("  {}\n", KEY.trim_end_matches('='))).expect("write");
        let from_file = format!(
            "name = \"ci\"\npublic_key_file = {:?}\nboards = [\"*\"]",
            file.display().to_string()
        );
        let s = load(&source(&from_file), &[]).expect("parses").validate().expect("valid");
        assert_eq!(s.access().webhook_sources[0].public_key.to_bytes(), {
            let from_inline = load(&source(&ok), &[]).expect("p").validate().expect("v");
            from_inline.access().webhook_sources[0].public_key.to_bytes()
        });
        let twice = format!("{}[[webhooks.sources]]\n{ok}\n", source(&ok));
        let weak = "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="; // the identity point
        for (text, key, says) in [
            (source(&ok.replace("\"ci\"", "\"CI\"")), "webhooks.sources[0].name", "a-z"),
            (twice, "webhooks.sources[1].name", "names another source"),
            (source(&ok.replace("[\"demo\"]", "[]")), "webhooks.sources[0].boards", "at least"),
            (source(&ok.replace(KEY, "c2hvcnQ=")), "webhooks.sources[0].public_key", "5 bytes"),
            (source(&ok.replace(KEY, "not base64!")), "webhooks.sources[0].public_key", "base64"),
            (source(&ok.replace(KEY, weak)), "webhooks.sources[0].public_key", "weak"),
            (
                source(&format!("{ok}\npublic_key_file = \"/x\"")),
                "webhooks.sources[0].public_key",
                "not both",
            ),
            (
                source("name = \"ci\"\nboards = [\"demo\"]"),
                "webhooks.sources[0].public_key",
                "missing",
            ),
        ] {
            match load(&text, &[]).expect("parses").validate() {
                Err(Error::Config { key: k, problem }) => {
                    assert_eq!(k, key, "{problem}");
                    assert!(problem.contains(says), "{key}: {problem}");
                }
                other => panic!("{key}: expected a config error, got {other:?}"),
            }
        }
    }

    #[test]
    fn the_backlog_hold_has_defaults_and_stays_under_the_homeservers_timeout() {
        let s = load(MINIMAL, &[]).expect("parses").validate().expect("valid");
        let a = &s.raw.appservice;
        assert_eq!((a.max_backlog, a.max_ready_backlog, a.backlog_hold_secs), (10_000, 1_000, 10));
        let c =
            load(MINIMAL, &[("BOARDROOM__APPSERVICE__MAX_READY_BACKLOG", "0")]).expect("parses");
        assert_eq!(c.validate().expect("0 turns it off").raw.appservice.max_ready_backlog, 0);
        let c = load(MINIMAL, &[("BOARDROOM__APPSERVICE__MAX_BACKLOG", "0")]).expect("parses");
        assert_eq!(c.validate().expect("0 turns holds off").raw.appservice.max_backlog, 0);
        for secs in ["0", "51"] {
            let c = load(MINIMAL, &[("BOARDROOM__APPSERVICE__BACKLOG_HOLD_SECS", secs)])
                .expect("parses");
            let err = c.validate().expect_err("refused");
            assert!(err.to_string().contains("appservice.backlog_hold_secs"), "{secs}: {err}");
        }
    }

    #[test]
    fn http_limits_have_defaults_take_env_strings_and_refuse_zero() {
        let s = load(MINIMAL, &[]).expect("parses").validate().expect("valid");
        assert_eq!(s.raw.http.header_read_timeout_secs, 10);
        assert_eq!(s.raw.http.body_read_timeout_secs, 60);
        assert_eq!(s.raw.http.idle_timeout_secs, 60);
        assert_eq!(s.raw.http.max_connections, 512);
        assert_eq!(s.api_listen, None);

        // Environment overrides arrive as strings.
        let c = load(MINIMAL, &[("BOARDROOM__HTTP__MAX_CONNECTIONS", "7")]).expect("parses");
        assert_eq!(c.http.max_connections, 7);
        let err =
            load(MINIMAL, &[("BOARDROOM__HTTP__IDLE_TIMEOUT_SECS", "soon")]).expect_err("bad");
        assert!(err.to_string().contains("http.idle_timeout_secs"), "{err}");
        // A mistake an environment variable made is reported against the variable.
        assert!(
            err.to_string()
                .contains("set by the environment variable BOARDROOM__HTTP__IDLE_TIMEOUT_SECS"),
            "{err}"
        );
        let err = load(MINIMAL, &[("BOARDROOM__API__LISTEN", "nowhere")])
            .expect("parses")
            .validate()
            .expect_err("refused");
        let text = err.to_string();
        assert!(text.contains("api.listen"), "{text}");
        assert!(text.contains("set by the environment variable BOARDROOM__API__LISTEN"), "{text}");
        // The same mistake in the file says nothing of a variable.
        let err = load(&format!("{MINIMAL}\n[api]\nlisten = \"nowhere\"\n"), &[])
            .expect("parses")
            .validate()
            .expect_err("refused");
        assert!(!err.to_string().contains("environment"), "{err}");

        for key in [
            "header_read_timeout_secs",
            "body_read_timeout_secs",
            "idle_timeout_secs",
            "max_connections",
        ] {
            let err = load(&format!("{MINIMAL}\n[http]\n{key} = 0\n"), &[])
                .expect("parses")
                .validate()
                .expect_err("zero is refused");
            assert!(err.to_string().contains(&format!("http.{key}")), "{err}");
        }
    }

    #[test]
    fn worker_threads_default_to_one_per_core_and_refuse_too_many() {
        let s = load(MINIMAL, &[]).expect("parses").validate().expect("valid");
        assert_eq!(s.raw.runtime.worker_threads, 0, "0: one per core");
        let s = load(&format!("{MINIMAL}\n[runtime]\nworker_threads = 1\n"), &[])
            .expect("parses")
            .validate()
            .expect("valid");
        assert_eq!(s.raw.runtime.worker_threads, 1);
        let c = load(MINIMAL, &[("BOARDROOM__RUNTIME__WORKER_THREADS", "2")]).expect("parses");
        assert_eq!(c.runtime.worker_threads, 2);
        for bad in ["-1", "\"two\""] {
            let err = load(&format!("{MINIMAL}\n[runtime]\nworker_threads = {bad}\n"), &[])
                .expect_err("not a count");
            assert!(err.to_string().contains("runtime.worker_threads"), "{bad}: {err}");
        }
        let err = load(&format!("{MINIMAL}\n[runtime]\nworker_threads = 1025\n"), &[])
            .expect("parses")
            .validate()
            .expect_err("too many");
        assert!(err.to_string().contains("runtime.worker_threads"), "{err}");
        let err =
            load(&format!("{MINIMAL}\n[runtime]\nthreads = 2\n"), &[]).expect_err("unknown key");
        assert!(err.to_string().contains("threads"), "{err}");
    }

    #[test]
    fn api_listen_is_parsed_and_must_differ_from_the_appservice_listener() {
        let s = load(&format!("{MINIMAL}\n[api]\nlisten = \"127.0.0.1:9010\"\n"), &[])
            .expect("parses")
            .validate()
            .expect("valid");
        assert_eq!(s.api_listen, Some("127.0.0.1:9010".parse().expect("addr")));
        for bad in ["127.0.0.1:9009", "nowhere"] {
            let err = load(&format!("{MINIMAL}\n[api]\nlisten = \"{bad}\"\n"), &[])
                .expect("parses")
                .validate()
                .expect_err("refused");
            assert!(err.to_string().contains("api.listen"), "{err}");
        }
    }

    #[test]
    fn metrics_listen_is_off_by_default_and_must_be_a_listener_of_its_own() {
        let s = load(MINIMAL, &[]).expect("parses").validate().expect("valid");
        assert_eq!(s.metrics_listen, None);
        let api = "[api]\nlisten = \"127.0.0.1:9010\"\n";
        let s = load(&format!("{MINIMAL}\n{api}[metrics]\nlisten = \"127.0.0.1:9011\"\n"), &[])
            .expect("parses")
            .validate()
            .expect("valid");
        assert_eq!(s.metrics_listen, Some("127.0.0.1:9011".parse().expect("addr")));
        for bad in ["127.0.0.1:9009", "127.0.0.1:9010", "nowhere"] {
            let err = load(&format!("{MINIMAL}\n{api}[metrics]\nlisten = \"{bad}\"\n"), &[])
                .expect("parses")
                .validate()
                .expect_err("refused");
            assert!(err.to_string().contains("metrics.listen"), "{bad}: {err}");
        }
    }

    #[test]
    fn globs() {
        assert!(glob_match("@*:example.org", "@alice:example.org"));
        assert!(!glob_match("@*:example.org", "@alice:evil.org"));
        assert!(!glob_match("@*:example.org", "@alice:example.org.evil"));
        assert!(glob_match("@alice:example.org", "@alice:example.org"));
        assert!(glob_match("@a*e:*", "@alice:x"));
        assert!(!glob_match("@a*e:*", "@bob:x"));
    }
}

/// `config.example.toml` against the config type: every key of the type appears in the
/// example (set, or commented out as `# key = …`), the example names no key the type lacks,
/// and the example is a valid config.
#[cfg(test)]
mod example_drift {
    use std::collections::BTreeSet;

    use super::*;
    use crate::error::Error;

    const EXAMPLE: &str = include_str!("../../config.example.toml");

    /// Keys of a config with every optional field set.
    fn type_keys() -> BTreeSet<String> {
        let mut c =
            Config::from_toml_with_env(EXAMPLE, std::iter::empty()).expect("example parses");
        c.appservice.as_token_file = Some("x".into());
        c.appservice.hs_token_file = Some("x".into());
        c.api.listen = Some("127.0.0.1:9010".into());
        c.metrics.listen = Some("127.0.0.1:9011".into());
        c.encryption.store_path = Some("x".into());
        for client in &mut c.api.clients {
            client.token_file = Some("x".into());
        }
        for source in &mut c.webhooks.sources {
            source.public_key_file = Some("x".into());
        }
        let value = toml::Value::try_from(&c).expect("serialize");
        let mut keys = BTreeSet::new();
        for (section, table) in value.as_table().expect("table") {
            for (key, v) in table.as_table().expect("section table") {
                match v.as_array().and_then(|a| a.first()).and_then(|f| f.as_table()) {
                    // An array of tables (`[[api.clients]]`): its keys, under `api.clients`.
                    Some(first) => {
                        keys.extend(first.keys().map(|k| format!("{section}.{key}.{k}")))
                    }
                    None => {
                        keys.insert(format!("{section}.{key}"));
                    }
                }
            }
        }
        keys
    }

    /// Keys the example sets or shows commented out.
    fn example_keys() -> BTreeSet<String> {
        let mut keys = BTreeSet::new();
        let mut section = String::new();
        for line in EXAMPLE.lines() {
            let line = line.trim();
            if let Some(s) = line.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
                section = s.trim_matches(|c| c == '[' || c == ']').to_owned();
                continue;
            }
            let code = line.strip_prefix("# ").unwrap_or(line);
            if let Some((key, _)) = code.split_once(" = ")
                && !key.is_empty()
                && key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
            {
                keys.insert(format!("{section}.{key}"));
            }
        }
        keys
    }

    #[test]
    fn example_and_type_have_the_same_keys() {
        assert_eq!(example_keys(), type_keys());
    }

    #[test]
    fn example_is_valid_once_its_placeholder_tokens_are_replaced() {
        let c = Config::from_toml_with_env(EXAMPLE, std::iter::empty()).expect("parses");
        match c.validate() {
            Err(Error::Config { key, problem }) => {
                assert_eq!(key, "appservice.as_token");
                assert!(
                    problem.contains("placeholder") && problem.contains("openssl"),
                    "{problem}"
                );
            }
            other => panic!("the example's placeholder tokens passed: {other:?}"),
        }
        let mut n = 0;
        let filled = EXAMPLE
            .lines()
            .map(|l| match l.split_once("\"change-me-") {
                Some((head, _)) => {
                    n += 1;
                    format!("{head}\"token-{n}-0123456789abcdef\"")
                }
                None => l.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(n, 3, "the example's placeholders");
        let c = Config::from_toml_with_env(&filled, std::iter::empty()).expect("parses");
        c.validate().expect("valid");
    }

    #[test]
    fn a_log_level_that_is_no_level_is_refused() {
        for good in
            ["info", "TRACE", "warn,boardroom=debug", "info,hyper=off", "boardroom::api=trace"]
        {
            super::settings::check_level(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in ["verbose", "info,loud", "debug, chatty"] {
            let e = super::settings::check_level(bad).expect_err(bad);
            assert!(e.contains("is not a level") && e.contains("boardroom=debug"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_toml_syntax_error_says_its_line_and_column() {
        let text = "[homeserver]\nurl = \"http://x\"\nserver_name = = \"x\"\n";
        match Config::from_toml_with_env(text, std::iter::empty()) {
            Err(Error::Config { key, problem }) => {
                assert_eq!(key, "(file)");
                assert!(problem.contains("line 3, column"), "{problem}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_missing_config_file_says_to_copy_the_example() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("boardroom.toml");
        match Config::load(&path) {
            Err(Error::Config { key, problem }) => {
                assert_eq!(key, "(file)");
                assert!(problem.contains("copy config.example.toml"), "{problem}");
                assert!(problem.contains(&path.display().to_string()), "{problem}");
            }
            other => panic!("{other:?}"),
        }
    }
}
