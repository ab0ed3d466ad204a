//! Speaking Matrix: a typed client ([`client`]) over ruma's request types with identity
//! assertion and retry, its errors keeping ruma's `ErrorKind`; the one retry mechanism
//! ([`backoff`]); acting as the bot or a virtual user ([`intent`]); lanes that drain a
//! durable queue in order per room (`lanes`); escaping for `formatted_body` (`html`).

pub mod backoff;
pub mod client;
pub(crate) mod html;
pub mod intent;
pub(crate) mod lanes;

pub use backoff::{Backoff, RetryPolicy};
pub use client::{Auth, HomeserverClient, HsError, RetryKind};
pub use intent::Intent;
