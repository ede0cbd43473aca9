//! Sessions: a pool of logged-in clients, each holding a SOAP and a REST session on one
//! endpoint. Layered one way, bottom up:
//!
//! - `config`: what a session is configured with (server, credentials, TLS, timeouts);
//! - `stats`: the counters a pool shares with its clients;
//! - `auth`: the credentials in use, the rejected mark, single-flight logins;
//! - `wire`: the per-client context of every request (endpoint, options, counters,
//!   auth), the retry loop and the secrets to redact;
//! - `slot`: `SessionSlot<P>`, one session of one protocol with re-login, keep-alive
//!   and logout, generic over the `Protocol` (its login and logout requests);
//! - `soap`, `rest`: the two protocols on the wire, traced and redacted;
//! - `client`: [`Client`], both sessions and the calls operations are built on;
//! - `pool`: [`SessionPool`].

mod auth;
mod client;
mod config;
mod pool;
pub(crate) mod rest;
mod slot;
mod soap;
mod stats;
mod wire;

pub use client::Client;
pub use config::{ClientOptions, Credentials, Secret, ServerSpec};
pub use pool::SessionPool;
pub use stats::PoolStats;
