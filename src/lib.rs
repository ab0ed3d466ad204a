//! Boardroom: task boards on Matrix, as an application service.
//!
//! # Layout
//!
//! Data flows one way: homeserver → [`appservice`] → [`inbound`] → [`commands`] /
//! [`boards`] / [`tasks`] / [`notifications`] → [`store`], and out again through the
//! durable [`outbox`] and the [`matrix`] client.
//!
//! - [`api`]: the HTTP API for bots and task apps (`/_boardroom/api/v1`).
//! - [`appservice`]: what the homeserver sends us. `hs_token` auth, transactions (made
//!   durable before they are acknowledged), user and alias queries, ping.
//! - [`inbound`]: drains the durable inbound queue, in order within a room and in parallel
//!   across rooms, and turns each event into outbound requests.
//! - [`domain`]: the rules (who the bot answers, whose invite it accepts), free of HTTP and
//!   storage.
//! - [`boards`]: the board model, the board operations, and the index of the rooms' state.
//! - [`tasks`]: the task model and the task operations.
//! - [`notifications`]: users' inbox, who a message mentions, and what processing records
//!   in the inbox.
//! - [`commands`]: the chat command registry, parser and help text.
//! - [`matrix`]: what we send the homeserver. A typed client over ruma's request types,
//!   identity assertion, retry with backoff, start-up tasks, HTML escaping, and the
//!   per-room lanes that drain a durable queue (in order within a room, in parallel across
//!   rooms); the inbound queue and the outbox both run on them.
//! - [`outbox`]: the worker that sends the durable outbox's requests.
//! - [`store`]: RocksDB. The column-family catalog, the key codec, schema versions, and one
//!   repository per aggregate.
//! - [`config`], [`error`], [`app`]: configuration, the one error enum, and the wiring
//!   that starts everything (with the [`context::Context`] every operation is given).

pub mod api;
pub mod app;
pub mod appservice;
pub(crate) mod boards;
pub(crate) mod commands;
pub mod config;
pub mod context;
pub mod domain;
pub mod error;
pub(crate) mod inbound;
pub(crate) mod listener;
pub mod matrix;
pub(crate) mod notifications;
pub mod outbox;
pub mod registration;
pub mod reindex;

pub mod store;
pub(crate) mod tasks;

pub mod testing;

pub use config::Config;
pub use error::{Error, Result};
