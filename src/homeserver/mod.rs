//! What we send the homeserver: a typed client ([`client`]) over ruma's request types with
//! identity assertion and retry; the durable outbox worker ([`outbox`]); start-up tasks
//! ([`startup`]).

pub mod client;
pub mod outbox;
pub mod startup;

pub use client::{Auth, HomeserverClient, HsError, RetryKind, RetryPolicy};
