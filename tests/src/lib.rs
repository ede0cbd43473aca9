//! Test environment: real etcd, kube-apiserver and vcsim vCenters (a source and a target, or
//! as many of each as a test asks for), started on loopback addresses and stopped on drop.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! // One environment per test binary (stopped at exit); or `TestEnv::start_default()` for
//! // one of your own (stopped on drop).
//! let env = vsm_testenv::TestEnv::shared().await?;
//! let client = env.client(); // admin kube::Client (group system:masters)
//! let src = env.source(); // vCenter `source`: src.url, src.username, src.password, src.ca_pem
//! // In OpenShift objects a vCenter is `src.host()` with `src.port()`; `src.server()` is host:port.
//! # Ok(()) }
//! ```
//!
//! What is there:
//! - kube-apiserver (see [`tools::KUBERNETES_VERSION`]) with RBAC, a client-certificate admin,
//!   an admin token and a non-admin token for [`apiserver::OPERATOR_USER`]; all certificates
//!   from one [`TestCa`] per environment.
//! - The project's CRDs from `crds/`, the OpenShift CRDs (real ones from
//!   `../shared/fixtures/openshift-crds`, else `tests/crds-fallback/`), all Established, and
//!   the namespaces in [`crds::NAMESPACES`].
//! - Two vCenters ([`vcsim::source`] on 127.0.0.1, [`vcsim::target`] on 127.0.0.2) with their
//!   own inventory names, credentials and CA-signed certificates; more on request
//!   ([`TestEnvOptions::extra_sources`], [`TestEnvOptions::extra_targets`], listed with their
//!   role by [`TestEnv::vcenters`]), and zonal inventories with one compute cluster per
//!   failure domain ([`VcsimOptions::zonal_source`], [`VcsimOptions::zonal_target`]).
//! - Opt-in ([`TestEnvOptions::machine_api`]): the real machine-api controllers (Machine
//!   with the vSphere actuator, MachineSet, nodelink, MachineHealthCheck) and admission
//!   webhooks from machine-api-operator ([`machine_api`]).
//!
//! What is not: no kube-controller-manager or scheduler. Nothing garbage-collects owner
//! references, deleted namespaces stay Terminating, no service-account tokens are minted,
//! no pods run. The cluster simulator plays the controllers the migration needs.
//!
//! The Go tools (machine-api included) are built on first use ([`tools::ensure_built`];
//! minutes once, then cached under `$XDG_CACHE_HOME/vsphere-migration/tools`).
//! `cargo xtask testenv --keep` starts an environment for manual exploration.

pub mod apiserver;
pub mod crds;
pub mod demo;
pub mod deploy;
pub mod env;
pub mod etcd;
pub mod fault_proxy;
pub mod harness;
pub mod machine_api;
pub mod pki;
pub mod probe;
pub mod process;
pub mod sim;
pub mod tools;
pub mod vcsim;
pub mod workspace;

pub use crds::OpenShiftCrds;
pub use env::{TestEnv, TestEnvOptions, VCenterRole};
pub use pki::TestCa;
pub use vcsim::{Inventory, InventoryCluster, Vcsim, VcsimOptions, VcsimStats};
