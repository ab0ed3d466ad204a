//! Boardroom: task boards on Matrix, as an application service.
//!
//! # Layout
//!
//! Data flows one way: homeserver → [`appservice`] → [`process`] → [`domain`] / [`commands`]
//! → [`store`], and out again through the [`homeserver`] client's durable outbox.
//!
//! - [`api`]: the HTTP API for bots and task apps (`/_boardroom/api/v1`).
//! - [`appservice`]: what the homeserver sends us. `hs_token` auth, transactions (made
//!   durable before they are acknowledged), user and alias queries, ping.
//! - [`process`]: drains the durable inbound queue, in order within a room and in parallel
//!   across rooms, and turns each event into outbound requests.
//! - [`domain`]: the rules (who the bot answers, whose invite it accepts), free of HTTP and
//!   storage.
//! - [`commands`]: the chat command registry, parser and help text.
//! - [`homeserver`]: what we send the homeserver. A typed client over ruma's request types,
//!   identity assertion, retry with backoff, the outbox worker, start-up tasks.
//! - [`lanes`]: drains a durable queue in per-room lanes (in order within a room, in
//!   parallel across rooms); the inbound queue and the outbox both run on it.
//! - [`store`]: RocksDB. The column-family catalog, the key codec, schema versions, and one
//!   repository per aggregate.
//! - [`config`], [`error`], [`server`]: configuration, the one error enum, and the wiring
//!   that starts everything.

pub mod api;
pub mod appservice;
pub mod commands;
pub mod config;
pub mod domain;
pub mod error;
pub mod homeserver;
pub mod lanes;
pub mod listener;
pub mod process;
pub mod registration;
pub mod reindex;
pub mod server;
pub mod store;

pub use config::Config;
pub use error::{Error, Result};
