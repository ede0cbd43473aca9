//! vsphere-migration: an operator that moves a running OpenShift cluster from one vCenter
//! to another, one sandboxed WebAssembly phase at a time.

pub mod api;
pub mod facts;
pub mod machine;
pub mod runtime;
pub mod services;
