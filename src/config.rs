//! Configuration: one TOML file, environment overrides, tokens inline or from a file.
//!
//! The doc comment on each field is the documentation of the same key in
//! `config.example.toml`; a test fails when the two files' keys drift apart.

use std::{
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use ruma::{OwnedServerName, OwnedUserId, ServerName, UserId};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

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
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
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

/// A secret string: never printed by `Debug` or `Display`.
#[derive(Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

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

/// The configuration after validation, with tokens read and names parsed.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The file as written.
    pub raw: Config,
    /// `homeserver.url` without a trailing slash.
    pub homeserver_url: String,
    /// `homeserver.server_name`.
    pub server_name: OwnedServerName,
    /// `appservice.listen`.
    pub listen: SocketAddr,
    /// `api.listen`, when the HTTP API has a listener of its own.
    pub api_listen: Option<SocketAddr>,
    /// The token we send.
    pub as_token: Secret,
    /// The token the homeserver sends.
    pub hs_token: Secret,
    /// `@<bot_localpart>:<server_name>`.
    pub bot_user_id: OwnedUserId,
    /// API clients with their tokens read.
    pub api_clients: Vec<ApiClient>,
}

/// An API client, validated.
#[derive(Clone, Debug)]
pub struct ApiClient {
    /// Its name.
    pub name: String,
    /// Its token.
    pub token: Secret,
    /// Boards it may act on; `"*"` is every board.
    pub boards: Vec<String>,
    /// The most virtual users it may own.
    pub max_virtual_users: u64,
}

impl ApiClient {
    /// Whether it may act on `slug`.
    pub fn may_act_on(&self, slug: &str) -> bool {
        self.boards.iter().any(|b| b == "*" || b == slug)
    }
}

impl Config {
    /// Reads the file at `path` and applies `BOARDROOM__…` environment overrides.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Config {
            key: path.display().to_string(),
            problem: format!("cannot read the config file: {e}"),
        })?;
        Self::from_toml_with_env(&text, std::env::vars())
    }

    /// Parses TOML text, then applies overrides from `vars` (name, value).
    pub fn from_toml_with_env(
        text: &str,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self> {
        let mut table: toml::Table = toml::from_str(text).map_err(|e| Error::Config {
            key: "(file)".to_owned(),
            problem: format!("not valid TOML: {}", e.message()),
        })?;
        for (name, value) in vars {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let Some((section, key)) = rest.split_once("__") else {
                return Err(Error::Config {
                    key: name.clone(),
                    problem: "environment overrides are named BOARDROOM__<SECTION>__<KEY>".into(),
                });
            };
            let section = section.to_ascii_lowercase();
            let key = key.to_ascii_lowercase();
            let entry = table
                .entry(section.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let toml::Value::Table(section_table) = entry else {
                return Err(Error::Config {
                    key: section,
                    problem: "is not a table, so it cannot take an override".into(),
                });
            };
            section_table.insert(key, parse_env_value(&value));
        }
        let de = toml::Value::Table(table);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().message().to_owned();
            // serde reports a missing field at its parent; name the key itself.
            let key = match inner.strip_prefix("missing field `").and_then(|r| r.split('`').next())
            {
                Some(field) if path == "." || path.is_empty() => field.to_owned(),
                Some(field) => format!("{path}.{field}"),
                None => path,
            };
            Error::Config { key, problem: inner }
        })
    }

    /// A config for a Boardroom that reaches no homeserver (its URLs point at a closed
    /// loopback port), with the database at `db` and `extra` TOML sections appended:
    /// what unit tests and benchmarks run the real router and store with.
    #[doc(hidden)]
    pub fn offline(db: &Path, extra: &str) -> Result<Self> {
        let text = format!(
            "[homeserver]\nurl = \"http://127.0.0.1:9\"\nserver_name = \"localhost\"\n\
             [appservice]\nurl = \"http://127.0.0.1:9\"\nas_token = \"as\"\nhs_token = \"hs\"\n\
             [database]\npath = {}\n{extra}",
            toml::Value::String(db.display().to_string())
        );
        Self::from_toml_with_env(&text, std::iter::empty())
    }

    /// Checks every key and reads the token files.
    pub fn validate(&self) -> Result<Settings> {
        let bad = |key: &str, problem: String| Error::Config { key: key.to_owned(), problem };

        let homeserver_url = self.homeserver.url.trim_end_matches('/').to_owned();
        check_http_url(&homeserver_url).map_err(|p| bad("homeserver.url", p))?;
        let server_name = ServerName::parse(&self.homeserver.server_name)
            .map_err(|e| bad("homeserver.server_name", format!("not a valid server name: {e}")))?;

        let a = &self.appservice;
        if a.id.trim().is_empty() {
            return Err(bad("appservice.id", "must not be empty".into()));
        }
        let listen: SocketAddr = a.listen.parse().map_err(|e| {
            bad("appservice.listen", format!("not an address:port such as 127.0.0.1:9009: {e}"))
        })?;
        check_http_url(&a.url).map_err(|p| bad("appservice.url", p))?;
        let as_token = read_token(&a.as_token, &a.as_token_file, "appservice.as_token")?;
        let hs_token = read_token(&a.hs_token, &a.hs_token_file, "appservice.hs_token")?;
        if as_token == hs_token {
            return Err(bad(
                "appservice.hs_token",
                "must differ from as_token, or either side could impersonate the other".into(),
            ));
        }
        check_localpart(&a.bot_localpart).map_err(|p| bad("appservice.bot_localpart", p))?;
        check_localpart(&a.namespace_prefix).map_err(|p| bad("appservice.namespace_prefix", p))?;
        if a.bot_localpart.starts_with(&a.namespace_prefix) {
            return Err(bad(
                "appservice.bot_localpart",
                "must not start with namespace_prefix: the bot is not a virtual user".into(),
            ));
        }
        let bot_user_id = UserId::parse(format!("@{}:{}", a.bot_localpart, server_name))
            .map_err(|e| bad("appservice.bot_localpart", e.to_string()))?;

        if self.database.path.as_os_str().is_empty() {
            return Err(bad("database.path", "must not be empty".into()));
        }
        for (i, glob) in self.permissions.board_creators.iter().enumerate() {
            if !glob.starts_with('@') || !glob.contains(':') {
                return Err(bad(
                    &format!("permissions.board_creators[{i}]"),
                    format!("`{glob}` is not a user-id glob such as \"@*:example.org\""),
                ));
            }
        }
        tracing_subscriber::EnvFilter::try_new(&self.logging.level)
            .map_err(|e| bad("logging.level", format!("not a level or tracing filter: {e}")))?;

        let api_listen = match &self.api.listen {
            None => None,
            Some(text) => {
                let addr: SocketAddr = text.parse().map_err(|e| {
                    bad("api.listen", format!("not an address:port such as 127.0.0.1:9010: {e}"))
                })?;
                if addr == listen {
                    return Err(bad(
                        "api.listen",
                        "must differ from appservice.listen (leave it unset to share it)".into(),
                    ));
                }
                Some(addr)
            }
        };
        let h = &self.http;
        for (key, value, max) in [
            ("http.header_read_timeout_secs", h.header_read_timeout_secs, 86_400),
            ("http.body_read_timeout_secs", h.body_read_timeout_secs, 86_400),
            ("http.idle_timeout_secs", h.idle_timeout_secs, 86_400),
            ("http.max_connections", h.max_connections, 1 << 20),
        ] {
            if !(1..=max).contains(&value) {
                return Err(bad(key, format!("must be between 1 and {max}")));
            }
        }

        let mut api_clients = Vec::new();
        for (i, c) in self.api.clients.iter().enumerate() {
            let key = format!("api.clients[{i}].token");
            if c.name.trim().is_empty() {
                return Err(bad(&format!("api.clients[{i}].name"), "must not be empty".into()));
            }
            // Virtual users belong to a client by its name.
            if api_clients.iter().any(|o: &ApiClient| o.name == c.name) {
                return Err(bad(
                    &format!("api.clients[{i}].name"),
                    format!("`{}` names another client too; names must differ", c.name),
                ));
            }
            let token = read_token(&c.token, &c.token_file, &key)?;
            if token == as_token
                || token == hs_token
                || api_clients.iter().any(|o: &ApiClient| o.token == token)
            {
                return Err(bad(
                    &key,
                    "must differ from the appservice tokens and other clients' tokens".into(),
                ));
            }
            api_clients.push(ApiClient {
                name: c.name.clone(),
                token,
                boards: c.boards.clone(),
                max_virtual_users: c.max_virtual_users,
            });
        }

        Ok(Settings {
            api_clients,
            raw: self.clone(),
            homeserver_url,
            server_name,
            listen,
            api_listen,
            as_token,
            hs_token,
            bot_user_id,
        })
    }
}

impl Settings {
    /// Whether `user_id` is the bot or one of our virtual users (an echo of ourselves).
    pub fn is_ours(&self, user_id: &UserId) -> bool {
        user_id == self.bot_user_id || self.is_virtual_user(user_id)
    }

    /// Whether `user_id` lies in the exclusive virtual-user namespace.
    pub fn is_virtual_user(&self, user_id: &UserId) -> bool {
        user_id.server_name() == self.server_name
            && user_id.localpart().starts_with(&self.raw.appservice.namespace_prefix)
    }

    /// Whether `permissions.board_creators` matches `user_id`.
    pub fn is_board_creator(&self, user_id: &UserId) -> bool {
        self.raw.permissions.board_creators.iter().any(|g| glob_match(g, user_id.as_str()))
    }
}

/// Matches `text` against `pattern`, where `*` matches any run of characters.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let [first, middle @ .., last] = parts.as_slice() else {
        return pattern == text;
    };
    if parts.len() == 1 {
        return pattern == text;
    }
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

fn parse_env_value(value: &str) -> toml::Value {
    // Arrays, tables and booleans are read as TOML; everything else (tokens that happen to
    // look like numbers included) is a string.
    let structured =
        value.starts_with('[') || value.starts_with('{') || value == "true" || value == "false";
    if !structured {
        return toml::Value::String(value.to_owned());
    }
    match format!("v = {value}").parse::<toml::Table>() {
        Ok(mut t) => t.remove("v").unwrap_or_else(|| toml::Value::String(value.to_owned())),
        Err(_) => toml::Value::String(value.to_owned()),
    }
}

fn check_http_url(url: &str) -> std::result::Result<(), String> {
    let parsed: http::Uri =
        url.parse().map_err(|e| format!("`{url}` is not a URL such as http://host:port: {e}"))?;
    match parsed.scheme_str() {
        Some("http" | "https") if parsed.host().is_some() => Ok(()),
        _ => Err(format!("`{url}` must be an http:// or https:// URL with a host")),
    }
}

fn check_localpart(s: &str) -> std::result::Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if let Some(c) =
        s.chars().find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '.' | '_' | '=' | '-' | '/' | '+'))
    {
        return Err(format!("`{s}` contains `{c}`; use lowercase letters, digits and ._=-/+"));
    }
    Ok(())
}

fn read_token(inline: &Option<Secret>, file: &Option<PathBuf>, key: &str) -> Result<Secret> {
    let token = match (inline, file) {
        (Some(_), Some(_)) => {
            return Err(Error::Config {
                key: key.to_owned(),
                problem: format!("set either `{key}` or `{key}_file`, not both"),
            });
        }
        (None, None) => {
            return Err(Error::Config {
                key: key.to_owned(),
                problem: format!("missing: set `{key}` or `{key}_file`"),
            });
        }
        (Some(t), None) => t.expose().trim().to_owned(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map_err(|e| Error::Config {
                key: format!("{key}_file"),
                problem: format!("cannot read {}: {e}", path.display()),
            })?
            .trim()
            .to_owned(),
    };
    if token.is_empty() {
        return Err(Error::Config { key: key.to_owned(), problem: "is empty".into() });
    }
    Ok(Secret(token))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(s.api_clients[0].max_virtual_users, DEFAULT_MAX_VIRTUAL_USERS);
        let twice =
            format!("{MINIMAL}\n{one}[[api.clients]]\nname = \"tracker\"\ntoken = \"t2\"\n");
        let err = load(&twice, &[]).expect("parses").validate().expect_err("same name");
        assert!(err.to_string().contains("api.clients[1].name"), "{err}");
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

    const EXAMPLE: &str = include_str!("../config.example.toml");

    /// Keys of a config with every optional field set.
    fn type_keys() -> BTreeSet<String> {
        let mut c =
            Config::from_toml_with_env(EXAMPLE, std::iter::empty()).expect("example parses");
        c.appservice.as_token_file = Some("x".into());
        c.appservice.hs_token_file = Some("x".into());
        c.api.listen = Some("127.0.0.1:9010".into());
        for client in &mut c.api.clients {
            client.token_file = Some("x".into());
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
    fn example_is_a_valid_config() {
        let c = Config::from_toml_with_env(EXAMPLE, std::iter::empty()).expect("parses");
        c.validate().expect("valid");
    }
}
