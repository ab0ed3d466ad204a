//! Boardroom's integration tests, in one crate (one binary to link): router tests against
//! a real RocksDB in a temporary directory, CLI tests of the real binary, and end-to-end
//! tests against a real Synapse.

mod access_props;
mod api_chat;
mod api_tasks;
mod appservice;
mod architecture;
mod backup;
mod boards;
mod bot;
mod cli;
mod deploy;
mod encryption;
mod harness;
mod hostile;
mod live;
mod metrics;
mod notifications;
mod outbox;
mod plumbing;
mod reload;
mod scale;
mod security_abuse;
mod security_api;
mod security_diskfull;
mod security_faults;
mod security_limits;
mod security_trust;
mod sse;
mod standin;
mod tasks;
mod under_load;
mod webhooks;
