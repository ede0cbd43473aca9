//! Test environment: real etcd, kube-apiserver and two vcsim vCenters, started on
//! 127.0.0.1 and stopped on drop.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let env = vsm_testenv::TestEnv::start_default().await?;
//! let client = env.client(); // admin kube::Client
//! println!("{} {}", env.source().url, env.target().url);
//! # Ok(()) }
//! ```

pub mod apiserver;
pub mod crds;
pub mod env;
pub mod etcd;
pub mod fault_proxy;
pub mod pki;
pub mod probe;
pub mod process;
pub mod tools;
pub mod vcsim;

pub use crds::OpenShiftCrds;
pub use env::{TestEnv, TestEnvOptions};
pub use pki::TestCa;
pub use vcsim::{Vcsim, VcsimOptions, VcsimStats};
