//! What we send the homeserver: a typed client ([`client`]) over ruma's request types with
//! identity assertion and retry, its errors keeping ruma's `ErrorKind`; the one retry
//! mechanism ([`backoff`]); the durable outbox worker ([`outbox`]); start-up tasks
//! ([`startup`]).

pub mod backoff;
pub mod client;
pub mod outbox;
pub mod startup;

pub use backoff::{Backoff, RetryPolicy};
pub use client::{Auth, HomeserverClient, HsError, RetryKind};
