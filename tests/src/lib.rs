//! Test environment: real etcd, kube-apiserver and two vcsim vCenters, started on
//! 127.0.0.1 and stopped on drop.

pub mod fault_proxy;
pub mod pki;
pub mod probe;
pub mod process;
pub mod tools;
pub mod vcsim;

pub use pki::TestCa;
pub use vcsim::{Vcsim, VcsimOptions, VcsimStats};
