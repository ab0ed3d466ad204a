//! Boardroom: task boards on Matrix, as an application service.
//!
//! # Layout
//!
//! Data flows one way: homeserver → [`appservice`] → `inbound` → `commands` (chat) →
//! the operations of `boards`, `tasks` and `notifications` → [`store`], and out again
//! through the durable [`outbox`] and the [`matrix`] client. The HTTP API ([`api`]) calls
//! the same operations. Top-level modules depend on each other without cycles (a test over
//! the sources checks it): [`error`] < [`config`] < [`ratelimit`] < [`crypto`] < [`matrix`] < [`domain`] < [`store`] <
//! [`context`] < `actors` < `notifications` < `boards` < `tasks` < `chat` < `stream` < `commands` < [`api`],
//! [`appservice`], `inbound`, [`outbox`], [`reindex`], [`webhooks`] < [`app`]. Signed
//! webhooks ([`webhooks`]) call the same operations as the API. `docs/ARCHITECTURE.md`
//! says what each owns.

pub(crate) mod actors;
pub mod api;
pub mod app;
pub mod appservice;
pub(crate) mod boards;
pub(crate) mod chat;
pub(crate) mod commands;
pub mod config;
pub mod context;
pub mod crypto;
pub mod domain;
pub mod error;
pub(crate) mod inbound;
pub(crate) mod listener;
pub mod matrix;
pub mod metrics;
pub(crate) mod notifications;
pub mod outbox;
pub mod ratelimit;
pub mod registration;
pub mod reindex;

pub mod store;
pub(crate) mod stream;
pub(crate) mod tasks;
pub mod webhooks;

pub mod testing;

#[doc(hidden)]
pub mod fuzzing;

pub use config::Config;
pub use error::{Error, Result};
