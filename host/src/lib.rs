//! vsphere-migration: an operator that moves a running OpenShift cluster from one vCenter
//! to another, one sandboxed WebAssembly phase at a time.

pub mod api;
pub mod backends;
pub mod controller;
pub mod facts;
pub mod leader;
pub mod lifecycle;
pub mod metrics;
pub mod operator;
pub mod runtime;
pub mod server;
