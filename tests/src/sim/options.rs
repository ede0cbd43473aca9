//! What to seed and how the simulated controllers behave.

use std::time::Duration;

/// The format of `openshift-config/cloud-provider-config` (key `config`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CloudConfigFormat {
    /// The YAML format OpenShift writes since 4.13 (`global`, `vcenter`, `labels`).
    #[default]
    Yaml,
    /// The legacy INI format (`[Global]`, `[Workspace]`, `[VirtualCenter "..."]`, `[Labels]`).
    Ini,
}

/// What [`seed`](super::seed) creates.
#[derive(Clone, Debug)]
pub struct SeedOptions {
    /// `Infrastructure.status.infrastructureName`; prefixes Machine, MachineSet and VM names.
    pub infra_id: String,
    /// Worker Machines, spread round-robin over the worker MachineSets.
    pub workers: u32,
    /// Worker MachineSets `<infraID>-worker-0..` (at least 1).
    pub worker_machinesets: u32,
    /// An extra MachineSet `<infraID>-infra-0` (role `infra`) with this many Machines; a
    /// migration must not take it as its worker template.
    pub infra_machines: Option<u32>,
    pub cloud_config: CloudConfigFormat,
    /// An Infrastructure with `vcenters` but no `failureDomains` (clusters installed before
    /// failure domains existed); the CPMS then has no failure domains either.
    pub legacy_no_failure_domains: bool,
    /// Static-IP style device settings (gateway, nameservers, IP pool) on the network device
    /// of worker MachineSet 0, so "other device settings are kept" can be tested.
    pub static_ip_workers: bool,
    /// Name of the template VM created in `/<dc>/vm/` of both vCenters.
    pub template_name: String,
    /// OpenShift version reported by ClusterVersion and the ClusterOperators.
    pub openshift_version: String,
    /// Requests (Kubernetes and vSphere) in flight at once.
    pub concurrency: usize,
    /// A zonal cluster: a failure domain per compute cluster of every source vCenter (see
    /// [`ZonalSeed`]); None for the classic one-domain cluster in the first source vCenter.
    pub zonal: Option<ZonalSeed>,
    /// The FeatureGate's `spec.featureSet` ("" is Default); `TechPreviewNoUpgrade` turns
    /// [`MULTI_VCENTER_GATE`](super::MULTI_VCENTER_GATE) on. Pair it with the environment's
    /// [`OpenShiftCrds::Variant`](crate::OpenShiftCrds::Variant)`("techpreview")`.
    pub feature_set: String,
}

/// What a zonal seed adds to the classic one ([`SeedOptions::zonal`]).
///
/// The failure domains are the compute clusters of the environment's source vCenters, in
/// order ([`TestEnv::sources`](crate::TestEnv::sources) and each one's
/// [`Inventory`](crate::vcsim::Inventory), e.g. from [`VcsimOptions::zonal_source`](crate::VcsimOptions::zonal_source)):
/// the Infrastructure lists them all (and every source vCenter), masters go one per domain,
/// each domain gets a worker MachineSet `<infraID>-worker-<i>` (`workers` spread over them;
/// `worker_machinesets` is ignored), the `infra_machines` set goes into the first domain with
/// the taint `node-role.kubernetes.io/infra:NoSchedule`, and each source vCenter gets the
/// region and zone tags OpenShift reads (categories `openshift-region` on the datacenter,
/// `openshift-zone` on each cluster). Not with `legacy_no_failure_domains`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ZonalSeed {
    /// A MachineAutoscaler `<infraID>-worker-0` (min, max) for the first worker MachineSet,
    /// with the annotations the cluster autoscaler operator puts on its target.
    pub autoscaler: Option<(u32, u32)>,
    /// A MachineHealthCheck `<infraID>-worker-health` selecting every worker Machine.
    pub health_check: bool,
}

impl ZonalSeed {
    /// An autoscaler (1 to 3 machines) and a health check.
    pub fn full() -> Self {
        ZonalSeed { autoscaler: Some((1, 3)), health_check: true }
    }
}

impl Default for SeedOptions {
    fn default() -> Self {
        SeedOptions {
            infra_id: "vsm-test-x7k2p".into(),
            workers: 3,
            worker_machinesets: 1,
            infra_machines: None,
            cloud_config: CloudConfigFormat::Yaml,
            legacy_no_failure_domains: false,
            static_ip_workers: true,
            template_name: "rhcos-template".into(),
            openshift_version: "4.18.12".into(),
            concurrency: 16,
            zonal: None,
            feature_set: String::new(),
        }
    }
}

/// How the [`Simulator`](super::Simulator) behaves. Every simulated wait is a field; the
/// time actually spent in them is reported by [`SimStats`](super::SimStats).
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// Play the cloud credential operator: keep `openshift-machine-api/vsphere-cloud-credentials`
    /// a copy of `kube-system/vsphere-creds`.
    pub credentials: bool,
    /// Play the control-plane machine set operator.
    pub control_plane: bool,
    /// Play the Deployment, DaemonSet, scheduler, kubelet and pod-GC controllers.
    pub workloads: bool,
    /// Play the ClusterOperator health rules.
    pub operators: bool,

    /// From a VM seen powered on to its kubelet's Ready Node (with the environment's real
    /// machine-api, which makes the VMs).
    pub machine_boot: Duration,
    /// A scheduled pod becomes Running and Ready after this.
    pub pod_start: Duration,
    /// A deleted (terminating) pod disappears after this.
    pub pod_stop: Duration,
    /// A deleted ControlPlaneMachineSet `cluster` is regenerated (Inactive) after this.
    pub cpms_regenerate: Duration,
    /// A ClusterOperator turns Degraded after its problem has lasted this long.
    pub operator_degrade: Duration,
    /// A ClusterOperator recovers after its problems have been gone this long.
    pub operator_recover: Duration,

    /// Namespaces whose Deployments, DaemonSets and pods the workload controllers run.
    pub namespaces: Vec<String>,
}

impl SimOptions {
    /// Every delay zero: the controllers react as fast as they can.
    pub fn instant() -> Self {
        SimOptions {
            credentials: true,
            control_plane: true,
            workloads: true,
            operators: true,
            machine_boot: Duration::ZERO,
            pod_start: Duration::ZERO,
            pod_stop: Duration::ZERO,
            cpms_regenerate: Duration::ZERO,
            operator_degrade: Duration::ZERO,
            operator_recover: Duration::ZERO,
            namespaces: super::WORKLOAD_NAMESPACES.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// A few seconds per step: a migration looks like one on a real (very fast) cluster.
    pub fn realistic() -> Self {
        SimOptions {
            machine_boot: Duration::from_secs(5),
            pod_start: Duration::from_secs(3),
            pod_stop: Duration::from_secs(1),
            cpms_regenerate: Duration::from_secs(2),
            operator_degrade: Duration::from_secs(1),
            operator_recover: Duration::from_secs(5),
            ..Self::instant()
        }
    }
}

impl Default for SimOptions {
    fn default() -> Self {
        Self::instant()
    }
}
