//! The cluster simulator ("twin"): an OpenShift-on-vSphere cluster seeded into the test
//! environment, and small controllers that play the OpenShift operators a migration waits
//! on, so every wait of a migration phase is a real one.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use vsm_testenv::sim::{self, SeedOptions, SimOptions, Simulator};
//! let env = vsm_testenv::TestEnv::start_with_machine_api().await?;
//! let cluster = sim::seed(&env, &SeedOptions { workers: 5, ..Default::default() }).await?;
//! let handle = Simulator::start(&env, SimOptions::realistic());
//! // ... run a migration against `env` ...
//! println!("{:?}", handle.stats());
//! handle.stop().await;
//! # Ok(()) }
//! ```
//!
//! # Seeding ([`seed`])
//!
//! In the API server (classic, one failure domain): Infrastructure `cluster` (vSphere, the
//! source vCenter, failure domain `source-fd` unless `legacy_no_failure_domains`, status with
//! the infraID),
//! `kube-system/vsphere-creds` (`<host>.username/.password` of the source) and its copy
//! `openshift-machine-api/vsphere-cloud-credentials`, the installer's
//! `openshift-machine-api/{master,worker}-user-data` (an ignition pointer config to the
//! machine config server's pool), `openshift-config/cloud-provider-config` (YAML or INI, with
//! comments, each vCenter with its port), ClusterVersion
//! `version`, the [`CLUSTER_OPERATORS`] (healthy), the Proxy `cluster` (naming
//! `user-ca-bundle` with the source vCenters' own CAs, when they have any), the ConfigMaps
//! labelled for the trusted CA injection, CloudCredential `cluster` (passthrough, where its
//! CRD is installed), 3 masters and a ControlPlaneMachineSet
//! (Active, failure domain `source-fd`), worker MachineSets and Machines (plus an optional
//! `infra` MachineSet), a Ready Node per Machine (`providerID vsphere://<VM uuid>`), and the
//! Deployments (CVO, machine-config-operator, vSphere CCM, machine-api-controllers, CSI
//! controller and operator) and the CSI node DaemonSet, with Running, Ready pods. In vSphere: a template
//! VM in both vCenters that the real machine actuator can clone (hardware version 19, one
//! 16 GiB disk), the folder `/src-dc/vm/<infraID>`, and a VM per Machine in it (with a
//! network card on the machine network). MachineSets are made after their Machines.
//! Seed before starting the simulator; a second seed writes nothing. Every seeded Node has
//! the `topology.kubernetes.io/region`/`zone` of its failure domain (none in a legacy
//! cluster). Where each thing goes is [`layout`].
//!
//! A zonal cluster ([`SeedOptions::zonal`], [`ZonalSeed`]) in an environment whose source
//! vCenters have several compute clusters ([`VcsimOptions::zonal_source`](crate::VcsimOptions::zonal_source),
//! [`TestEnvOptions::extra_sources`](crate::TestEnvOptions::extra_sources)): a failure domain
//! per compute cluster of every source vCenter (`src-fd-a`: region `src-region`, zone
//! `src-zone-a`, `/src-dc/host/src-cluster-a`, datastore `src-ds-a`, template
//! `/src-dc/vm/rhcos-template-src-zone-a`), all of them in the Infrastructure and the CPMS
//! template, every source vCenter in `vcenters`, `vsphere-creds` and the cloud config (YAML
//! or INI), masters one per domain, a worker MachineSet `<infraID>-worker-<i>` per domain
//! (the installer's names and spread), the infra set tainted
//! `node-role.kubernetes.io/infra:NoSchedule` in the first domain, the region and zone tags
//! (categories `openshift-region`/`openshift-zone`) on each source datacenter and cluster —
//! from which the real vSphere actuator sets `machine.openshift.io/region`/`zone` on the
//! Machines, as the seed does — and, when asked, a MachineAutoscaler for the first worker set
//! (with the cluster autoscaler operator's min/max annotations on it) and a
//! MachineHealthCheck over the workers (run by the real machine-api). Templates are also
//! made for every compute cluster of every target vCenter
//! ([`SeededCluster::target_failure_domains`]); a migration creates the target's folder and
//! tags.
//!
//! # Simulated controllers ([`Simulator`])
//!
//! The simulator plays only what has no real counterpart in the environment. machine-api is
//! real: with [`TestEnvOptions::machine_api`](crate::TestEnvOptions::machine_api) the
//! environment runs OpenShift's own machine controllers (the vSphere actuator clones and
//! destroys the VMs, the MachineSet controller, nodelink, the health checks and the
//! admission webhooks), and the simulator adds the machines' side around them; without it,
//! nothing provisions or deletes a Machine (the simulator has no model of machine-api).
//! With the real machine-api:
//! - Kubelets: a powered-on VM that boots an OpenShift machine (the actuator gave it
//!   `guestinfo.hostname` and an ignition config) registers, after `machine_boot`, a Ready
//!   Node named by its hostname with `spec.providerID: vsphere://<BIOS UUID>`, the role
//!   labels of the pool its ignition config points at (`/config/<role>`) and the topology
//!   labels of the Infrastructure failure domain whose server and compute cluster hold the
//!   VM (the cloud controller manager's part, [`nodes::topology_labels`]); its guest reports
//!   an address through VMware Tools. A powered-off VM's Node turns Unknown; a Node whose
//!   VM is gone from every vCenter is deleted (the cloud node lifecycle controller's part).
//!   The VMs are seen through the launchers' control APIs, polled every 500 ms.
//! - The garbage collector's part: a Machine whose controlling MachineSet is gone is deleted.
//! - An IP address management provider: each IPAddressClaim (the actuator's, for a device
//!   with `addressesFromPools`) is bound to an IPAddress `192.168.10.<n>/24`, gateway
//!   `192.168.10.1`.
//! - The kubelet's part for the machine controller (with [`SimOptions::workloads`]): when
//!   the `machine-api-controllers` pod is replaced, the real machine controller restarts
//!   with the trust store that pod mounts (`mao-trusted-ca`), [`trust`].
//!
//! Always (each switched by its [`SimOptions`] field):
//! - The cloud credential operator: `openshift-machine-api/vsphere-cloud-credentials` is
//!   kept a copy of `kube-system/vsphere-creds`, except in Manual mode
//!   ([`SimOptions::credentials`]).
//! - The trusted CA injection, the cloud controller manager operator's `ccm-trusted-ca` and
//!   the cluster-config-operator's `kube-cloud-config` ([`trust`], with
//!   [`SimOptions::operators`]).
//! - The control-plane machine set operator, workloads and ClusterOperators, as below.
//!
//! Control-plane machine set operator (`openshift-machine-api/cluster`):
//! - Deleted: after `cpms_regenerate` a new one, Inactive, from the current masters (the
//!   provider spec of the first by name; the Infrastructure failure domains holding them).
//! - The desired provider spec of master index `i` is the template's, with workspace,
//!   template and network names taken from the Infrastructure failure domain
//!   `failureDomains.vsphere[i % n]` of the template (other fields kept); no failure domains
//!   means the template as is. A master is updated when its provider spec says the same
//!   (fields missing on one side and empty on the other are equal: machine-api's defaulting
//!   webhook re-encodes every Machine's provider spec).
//! - Status always (also Inactive): replicas (all matching Machines, going ones included),
//!   updatedReplicas, readyReplicas (Running with a Ready Node), unavailableReplicas,
//!   observedGeneration, conditions Available/Degraded/Progressing.
//! - Active with RollingUpdate: one index at a time, create `<prefix>-<random>-<i>`, wait for
//!   it to be ready, delete the old master, wait until it is gone, next index. OnDelete only
//!   refills an index left without a machine. A failure domain missing from the
//!   Infrastructure, or a failed replacement, sets Degraded and stops the rollout. Inactive
//!   never touches Machines.
//!
//! Workloads (in [`SimOptions::namespaces`]):
//! - Deployments: pods = `spec.replicas` (not counting terminating pods), extras deleted
//!   (not ready first, then newest), status replicas/readyReplicas/availableReplicas/
//!   updatedReplicas/unavailableReplicas/observedGeneration/conditions. Pods are owned by
//!   the Deployment directly (no ReplicaSets) and template changes do not roll pods.
//! - The CSI node DaemonSet: one pod per Node matching its node selector; a replacement
//!   waits for the terminating pod on that Node to be gone.
//! - Scheduler: a new pod goes to the least loaded Ready, schedulable Node matching its node
//!   selector (taints are not modelled).
//! - Kubelet: a bound pod becomes Running and Ready after `pod_start` once its Node is
//!   Ready; a deleted pod turns not Ready at once and is removed after `pod_stop` (without
//!   a kubelet a bound pod would stay Terminating for ever).
//! - Pod GC: pods on a Node that is gone, and pods whose Deployment or DaemonSet is gone.
//!
//! ClusterOperators ([`operators::RULED`]; the others keep their seeded status). A problem
//! turns an operator Degraded after `operator_degrade`; when it has none left it recovers
//! (Available=True, Degraded=False, Progressing=False) after `operator_recover`.
//! - `cloud-controller-manager`: the vsphere-cloud-controller-manager pods are not all
//!   Ready, or one is terminating (Progressing=True; Available=False when none is Ready); a
//!   vCenter of the Infrastructure without credentials in vsphere-creds, or with credentials
//!   that vCenter rejects; a vCenter without an entry in the cloud config, or whose entry's
//!   port (443 when unset) is not the one it listens on, or that is not a vCenter of the
//!   environment; a failure domain whose vCenter is not in `vcenters`, or whose datacenter
//!   the cloud config does not list for that vCenter; a cloud config that is missing or does
//!   not parse.
//! - `storage`: as cloud-controller-manager, for the CSI controller pods and the CSI node
//!   pods (one per Node), plus an INI `[Workspace] server` that is not in the Infrastructure.
//! - `machine-api`: the machine-api-controllers pod not Ready; a vCenter without (working)
//!   credentials.
//! - `machine-config`: Degraded (still Available) while the Infrastructure lists more than
//!   one vCenter; the migration is expected to tolerate that one.
//!
//! Not simulated: taints and tolerations, ReplicaSets, rolling Deployment template changes,
//! the CVO reconciling anything, the Infrastructure CRD's schema being restored.

pub mod cloud_config;
mod cluster_operators;
mod cpms;
pub mod credentials;
mod gc;
mod ipam;
mod kubelet;
pub mod layout;
pub mod nodes;
pub mod objects;
pub mod operators;
pub mod options;
pub mod provider;
mod runtime;
mod seed;
pub mod trust;
mod vsphere;
mod workloads;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

pub use cluster_operators::CLUSTER_OPERATORS;
pub use options::{CloudConfigFormat, SeedOptions, SimOptions, ZonalSeed};
pub use provider::FailureDomain;
pub use runtime::SimStats;
pub use seed::{
    ANNOTATION_AUTOSCALER_MAX, ANNOTATION_AUTOSCALER_MIN, INFRA_TAINT_KEY, LABEL_MACHINE_REGION, LABEL_MACHINE_ZONE,
    MULTI_VCENTER_GATE, REGION_CATEGORY, SOURCE_FAILURE_DOMAIN, SeededCluster, SeededVCenter, TARGET_FAILURE_DOMAIN,
    ZONE_CATEGORY, seed,
};

use crate::TestEnv;
use runtime::{Ctl, Shared};

/// Namespaces of the seeded Deployments and DaemonSets.
pub const WORKLOAD_NAMESPACES: &[&str] =
    &[objects::CVO_NS, objects::MCO_NS, objects::CCM_NS, objects::MACHINE_API_NS, objects::CSI_NS];

/// Starts the simulated controllers.
pub struct Simulator;

impl Simulator {
    /// Start the controllers on the current tokio runtime. They stop when the handle is
    /// dropped or [`SimHandle::stop`] is called.
    pub fn start(env: &TestEnv, opts: SimOptions) -> SimHandle {
        let (stop_tx, stop_rx) = watch::channel(false);
        let vcenters = vsphere::VCenters::from_env(env);
        let cluster = runtime::ClusterHandles {
            system_trust: env.system_trust_pem().to_string(),
            machine_api: env.machine_api_handle(),
        };
        let sh = runtime::start(env.client(), opts.clone(), vcenters, cluster, stop_rx);
        if env.machine_api().is_some() {
            // The real machine-api runs: the kubelets, an IP address provider and the
            // garbage collector are what it needs around it.
            runtime::run_controller(&sh, Ctl::Kubelet, kubelet::sync);
            runtime::run_controller(&sh, Ctl::Ipam, ipam::sync);
            runtime::run_controller(&sh, Ctl::GarbageCollector, gc::sync);
            let poller = sh.clone();
            sh.spawn(async move {
                loop {
                    tokio::time::sleep(kubelet::POLL).await;
                    poller.wake(Ctl::Kubelet);
                    poller.wake(Ctl::Ipam);
                }
            });
        }
        if opts.credentials {
            runtime::run_controller(&sh, Ctl::Credentials, credentials::sync);
        }
        if opts.control_plane {
            runtime::run_controller(&sh, Ctl::Cpms, cpms::sync);
        }
        if opts.workloads {
            runtime::run_controller(&sh, Ctl::Workloads, workloads::sync);
        }
        if opts.operators {
            runtime::run_controller(&sh, Ctl::Operators, operators::sync);
            runtime::run_controller(&sh, Ctl::ClusterConfig, trust::sync);
        }
        if opts.workloads && env.machine_api().is_some() {
            runtime::run_controller(&sh, Ctl::MachineController, trust::sync_machine_controller);
        }
        SimHandle { shared: sh, stop: stop_tx }
    }
}

/// The running simulator. Dropping it stops every controller.
pub struct SimHandle {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
}

impl SimHandle {
    /// A vCenter's password changed (rotated by a test): the simulated operators check
    /// `vsphere-creds` against this one from now on.
    pub fn set_vcenter_password(&self, host: &str, password: &str) {
        if let Some(vc) = self.shared.vcenters.by_host(host) {
            *vc.password.lock().expect("password lock") = password.to_string();
        }
    }

    pub fn stats(&self) -> SimStats {
        self.shared.stats()
    }

    /// The last errors the controllers met (they retry; useful when a test times out).
    pub fn errors(&self) -> Vec<String> {
        self.shared.errors()
    }

    /// What the controllers are doing right now (for a test that timed out).
    pub fn diagnostics(&self) -> String {
        self.shared.diagnostics()
    }

    pub fn options(&self) -> &SimOptions {
        &self.shared.opts
    }

    /// Stop every controller and wait for their tasks to end.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        self.shared.wait_stopped(Duration::from_secs(30)).await;
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}
