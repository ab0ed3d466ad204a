//! The configuration after validation: loading the file with its environment overrides,
//! checking every key (the error names it), reading tokens, parsing names.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
};

use ruma::{OwnedServerName, OwnedUserId, ServerName, UserId};

use super::{Config, ENV_PREFIX, Secret};
use crate::error::{Error, Result};

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
    /// `metrics.listen`, when metrics are served.
    pub metrics_listen: Option<SocketAddr>,
    /// The token we send.
    pub as_token: Secret,
    /// The token the homeserver sends.
    pub hs_token: Secret,
    /// `@<bot_localpart>:<server_name>`.
    pub bot_user_id: OwnedUserId,
    /// What a reload may change while Boardroom runs (API clients, webhook sources, board
    /// creators): [`Settings::access`]. Clones share it, so a reload reaches every part
    /// holding one.
    access: Arc<RwLock<Arc<Access>>>,
}

/// The part of the config a reload (`SIGHUP`) changes without a restart: who may call the
/// API, send webhooks and create boards.
#[derive(Clone, Debug)]
pub struct Access {
    /// API clients with their tokens read.
    pub api_clients: Vec<ApiClient>,
    /// Webhook sources with their public keys read.
    pub webhook_sources: Vec<WebhookSource>,
    /// `permissions.board_creators`: user-id globs.
    pub board_creators: Vec<String>,
    /// `logging.level`, as last loaded (applied by the process's log subscriber).
    pub log_level: String,
}

impl Access {
    /// Whether `board_creators` matches `user_id`.
    pub fn is_board_creator(&self, user_id: &UserId) -> bool {
        self.board_creators.iter().any(|g| glob_match(g, user_id.as_str()))
    }
}

/// What [`Settings::reload_from`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reloaded {
    /// The reloadable parts that changed and now apply, in words (`api.clients`, …).
    pub applied: Vec<&'static str>,
    /// Keys that changed but take effect only after a restart; still as they were.
    pub restart_needed: Vec<String>,
}

/// A webhook source, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookSource {
    /// Its name (the URL's last segment, and the owner of its virtual users).
    pub name: String,
    /// The key its deliveries are signed with.
    pub public_key: ed25519_dalek::VerifyingKey,
    /// Boards it may act on; `"*"` is every board.
    pub boards: Vec<String>,
    /// The most virtual users it may own.
    pub max_virtual_users: u64,
}

/// An API client, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiClient {
    /// Its name.
    pub name: String,
    /// Its token.
    pub token: Secret,
    /// Boards it may act on; `"*"` is every board.
    pub boards: Vec<String>,
    /// The most virtual users it may own.
    pub max_virtual_users: u64,
    /// Whether it may create boards.
    pub create_boards: bool,
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
            key: "(file)".to_owned(),
            problem: match e.kind() {
                std::io::ErrorKind::NotFound => format!(
                    "there is no config file at {}: copy config.example.toml there and edit it, \
                     or name another with --config",
                    path.display()
                ),
                _ => format!("cannot read the config file {}: {e}", path.display()),
            },
        })?;
        Self::from_toml_with_env(&text, std::env::vars())
    }

    /// Parses TOML text, then applies overrides from `vars` (name, value).
    pub fn from_toml_with_env(
        text: &str,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self> {
        // toml's own rendering of the error says the line and column, and shows them.
        let mut table: toml::Table = toml::from_str(text).map_err(|e| Error::Config {
            key: "(file)".to_owned(),
            problem: format!("not valid TOML: {}", e.to_string().trim_end()),
        })?;
        let mut from_env = Vec::new();
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
            from_env.push((format!("{section}.{key}"), name.clone()));
            section_table.insert(key, parse_env_value(&value));
        }
        let de = toml::Value::Table(table);
        let parsed: Result<Self> = serde_path_to_error::deserialize(de).map_err(|e| {
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
        });
        let mut config = parsed.map_err(|e| name_the_variable(e, &from_env))?;
        config.from_env = from_env;
        Ok(config)
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
        self.validate_file().map_err(|e| name_the_variable(e, &self.from_env))
    }

    fn validate_file(&self) -> Result<Settings> {
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
        check_level(&self.logging.level).map_err(|e| bad("logging.level", e))?;

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
        let metrics_listen = match &self.metrics.listen {
            None => None,
            Some(text) => {
                let addr: SocketAddr = text.parse().map_err(|e| {
                    bad(
                        "metrics.listen",
                        format!("not an address:port such as 127.0.0.1:9011: {e}"),
                    )
                })?;
                if addr == listen || Some(addr) == api_listen {
                    return Err(bad(
                        "metrics.listen",
                        "must differ from appservice.listen and api.listen".into(),
                    ));
                }
                Some(addr)
            }
        };
        // The homeserver is asked every 10 s: a shorter silence would flap between asks.
        if !(11..=86_400).contains(&self.health.max_homeserver_silence_secs) {
            return Err(bad(
                "health.max_homeserver_silence_secs",
                "must be between 11 and 86400 (the homeserver is asked every 10 s)".into(),
            ));
        }
        let h = &self.http;
        for (key, value, max) in [
            ("http.header_read_timeout_secs", h.header_read_timeout_secs, 86_400),
            ("http.body_read_timeout_secs", h.body_read_timeout_secs, 86_400),
            ("http.idle_timeout_secs", h.idle_timeout_secs, 86_400),
            ("http.max_connections", h.max_connections, 1 << 20),
            ("live.retention_days", self.live.retention_days, 3650),
            ("live.max_events_per_board", self.live.max_events_per_board, 1 << 40),
            ("live.buffer_events", self.live.buffer_events, 1 << 20),
            ("live.max_subscribers", self.live.max_subscribers, 1 << 20),
            ("live.keepalive_secs", self.live.keepalive_secs, 3600),
            ("health.max_queue_age_secs", self.health.max_queue_age_secs, 30 * 86_400),
            ("appservice.backlog_hold_secs", a.backlog_hold_secs, 50),
        ] {
            if !(1..=max).contains(&value) {
                return Err(bad(key, format!("must be between 1 and {max}")));
            }
        }

        if self.runtime.worker_threads > MAX_WORKER_THREADS {
            return Err(bad(
                "runtime.worker_threads",
                format!("must be at most {MAX_WORKER_THREADS} (0: one per CPU core)"),
            ));
        }

        let device = &self.encryption.device_id;
        if device.is_empty()
            || device.len() > 64
            || !device.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(bad("encryption.device_id", "must be 1 to 64 of A-Z a-z 0-9 _ -".into()));
        }

        if self.encryption.encrypt_new_rooms && !self.encryption.enabled {
            return Err(bad(
                "encryption.encrypt_new_rooms",
                "needs encryption.enabled = true: the bot could not read the rooms it made".into(),
            ));
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
                create_boards: c.create_boards,
            });
        }

        let webhook_sources = self.webhook_sources()?;

        let access = Access {
            api_clients,
            webhook_sources,
            board_creators: self.permissions.board_creators.clone(),
            log_level: self.logging.level.clone(),
        };
        Ok(Settings {
            access: Arc::new(RwLock::new(Arc::new(access))),
            raw: self.clone(),
            homeserver_url,
            server_name,
            listen,
            api_listen,
            metrics_listen,
            as_token,
            hs_token,
            bot_user_id,
        })
    }
}

/// A mistake in a key an environment variable set is reported against the variable, not
/// the file.
fn name_the_variable(e: Error, from_env: &[(String, String)]) -> Error {
    match e {
        Error::Config { key, problem } => {
            match from_env.iter().find(|(k, _)| key == *k || key.starts_with(&format!("{k}."))) {
                Some((_, var)) => Error::Config {
                    key,
                    problem: format!("{problem} (set by the environment variable {var})"),
                },
                None => Error::Config { key, problem },
            }
        }
        other => other,
    }
}

impl Config {
    /// `[[webhooks.sources]]`, checked, with their public keys read.
    fn webhook_sources(&self) -> Result<Vec<WebhookSource>> {
        let bad = |key: String, problem: String| Error::Config { key, problem };
        let mut sources: Vec<WebhookSource> = Vec::new();
        for (i, c) in self.webhooks.sources.iter().enumerate() {
            let at = |k: &str| format!("webhooks.sources[{i}].{k}");
            if c.name.is_empty()
                || c.name.len() > 64
                || !c.name.chars().all(|ch| matches!(ch, 'a'..='z' | '0'..='9' | '.' | '_' | '-'))
            {
                return Err(bad(
                    at("name"),
                    format!("`{}` is not a source name: 1 to 64 of a-z 0-9 . _ -", c.name),
                ));
            }
            if sources.iter().any(|o| o.name == c.name) {
                return Err(bad(
                    at("name"),
                    format!("`{}` names another source too; names must differ", c.name),
                ));
            }
            if c.boards.is_empty() {
                return Err(bad(
                    at("boards"),
                    "must name at least one board slug, or \"*\" for every board".into(),
                ));
            }
            let text = match (&c.public_key, &c.public_key_file) {
                (Some(_), Some(_)) => {
                    return Err(bad(
                        at("public_key"),
                        "set either `public_key` or `public_key_file`, not both".into(),
                    ));
                }
                (None, None) => {
                    return Err(bad(
                        at("public_key"),
                        "missing: set `public_key` or `public_key_file`".into(),
                    ));
                }
                (Some(k), None) => k.trim().to_owned(),
                (None, Some(path)) => std::fs::read_to_string(path)
                    .map_err(|e| {
                        bad(at("public_key_file"), format!("cannot read {}: {e}", path.display()))
                    })?
                    .trim()
                    .to_owned(),
            };
            let public_key = parse_public_key(&text).map_err(|p| bad(at("public_key"), p))?;
            sources.push(WebhookSource {
                name: c.name.clone(),
                public_key,
                boards: c.boards.clone(),
                max_virtual_users: c.max_virtual_users,
            });
        }
        Ok(sources)
    }
}

/// An ed25519 public key: 32 bytes in standard base64 (padding optional).
pub fn parse_public_key(text: &str) -> std::result::Result<ed25519_dalek::VerifyingKey, String> {
    use base64::Engine as _;
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let bytes = engine
        .decode(text)
        .map_err(|e| format!("not base64 (an ed25519 public key is 32 bytes in base64): {e}"))?;
    let bytes: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
        format!(
            "{} bytes; an ed25519 public key is 32 bytes (44 characters of base64)",
            bytes.len()
        )
    })?;
    let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes)
        .map_err(|_| "not an ed25519 public key (not a point of the curve)".to_owned())?;
    if key.is_weak() {
        return Err("a weak (small-order) ed25519 key: it would accept forged signatures".into());
    }
    Ok(key)
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

    /// Whether `permissions.board_creators`, as last loaded, matches `user_id`.
    pub fn is_board_creator(&self, user_id: &UserId) -> bool {
        self.access().is_board_creator(user_id)
    }

    /// API clients, webhook sources and board creators as last loaded.
    pub fn access(&self) -> Arc<Access> {
        self.access.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Puts `access` in place of what API clients, webhook sources and board creators were,
    /// for every holder of this settings' clones.
    pub fn set_access(&self, access: Access) {
        *self.access.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(access);
    }

    /// A reload: takes from `new` (validated from the file read again) what may change
    /// while Boardroom runs, and names the keys that changed but need a restart (they keep
    /// their running values). `logging.level` is the caller's to apply (the subscriber is
    /// the process's); it is reported here when it changed.
    pub fn reload_from(&self, new: &Settings) -> Reloaded {
        let old = self.access();
        let fresh = new.access();
        let mut applied = Vec::new();
        if old.api_clients != fresh.api_clients {
            applied.push("api.clients");
        }
        if old.webhook_sources != fresh.webhook_sources {
            applied.push("webhooks.sources");
        }
        if old.board_creators != fresh.board_creators {
            applied.push("permissions.board_creators");
        }
        if old.log_level != fresh.log_level {
            applied.push("logging.level");
        }
        self.set_access((*fresh).clone());

        // Everything else: the file's keys, less the reloadable ones, compared leaf by leaf.
        let mut restart_needed = Vec::new();
        let strip = |c: &Config| {
            let mut c = c.clone();
            c.api.clients.clear();
            c.webhooks.sources.clear();
            c.permissions.board_creators.clear();
            c.logging.level.clear();
            serde_json::to_value(&c).unwrap_or_default()
        };
        diff_keys("", &strip(&self.raw), &strip(&new.raw), &mut restart_needed);
        // Tokens read from files: the same key may now point at another token.
        if self.as_token != new.as_token
            && !restart_needed.iter().any(|k| k.starts_with("appservice.as_token"))
        {
            restart_needed.push("appservice.as_token".to_owned());
        }
        if self.hs_token != new.hs_token
            && !restart_needed.iter().any(|k| k.starts_with("appservice.hs_token"))
        {
            restart_needed.push("appservice.hs_token".to_owned());
        }
        Reloaded { applied, restart_needed }
    }
}

/// The dotted keys whose values differ between `a` and `b` (arrays compared whole).
fn diff_keys(at: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let path = if at.is_empty() { k.clone() } else { format!("{at}.{k}") };
                let none = Value::Null;
                diff_keys(&path, x.get(k).unwrap_or(&none), y.get(k).unwrap_or(&none), out);
            }
        }
        _ if a != b => out.push(at.to_owned()),
        _ => {}
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
    if token.starts_with(PLACEHOLDER_PREFIX) {
        return Err(Error::Config {
            key: key.to_owned(),
            problem: format!(
                "is still the example's placeholder `{PLACEHOLDER_PREFIX}…`: generate a token \
                 (openssl rand -hex 32) and put it here"
            ),
        });
    }
    Ok(Secret(token))
}

/// How `config.example.toml`'s placeholder tokens begin; a config still holding one is
/// refused, so that nobody runs with a token every reader of the example knows.
const PLACEHOLDER_PREFIX: &str = "change-me";

/// The most `runtime.worker_threads` may ask for.
const MAX_WORKER_THREADS: u64 = 1024;

/// Checks `logging.level`: a level, or a `tracing` filter whose bare words are levels. A
/// bare word that is not a level (`verbose`) parses as a filter for a target of that name,
/// so that nothing else, errors included, would be logged.
pub(crate) fn check_level(level: &str) -> std::result::Result<(), String> {
    tracing_subscriber::EnvFilter::try_new(level)
        .map_err(|e| format!("not a level or tracing filter: {e}"))?;
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    for directive in level.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let bare = !directive.contains(['=', '[', ':']);
        if bare && !LEVELS.contains(&directive.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "`{directive}` is not a level: use one of trace, debug, info, warn, error, off, \
                 or target=level such as boardroom=debug"
            ));
        }
    }
    Ok(())
}
