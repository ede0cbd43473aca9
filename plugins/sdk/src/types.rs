//! The object types the migration touches, and where OpenShift keeps the singletons.

use crate::ObjectType;

const fn ty(api_version: &'static str, kind: &'static str) -> TypeConst {
    TypeConst { api_version, kind }
}

/// An object type known at compile time; [`TypeConst::get`] makes the WIT record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TypeConst {
    pub api_version: &'static str,
    pub kind: &'static str,
}

impl TypeConst {
    pub fn get(&self) -> ObjectType {
        ObjectType { api_version: self.api_version.to_string(), kind: self.kind.to_string() }
    }
}

impl From<&TypeConst> for ObjectType {
    fn from(t: &TypeConst) -> Self {
        t.get()
    }
}

pub const SECRET: TypeConst = ty("v1", "Secret");
pub const CONFIG_MAP: TypeConst = ty("v1", "ConfigMap");
pub const POD: TypeConst = ty("v1", "Pod");
pub const NODE: TypeConst = ty("v1", "Node");
pub const PERSISTENT_VOLUME: TypeConst = ty("v1", "PersistentVolume");
pub const POD_DISRUPTION_BUDGET: TypeConst = ty("policy/v1", "PodDisruptionBudget");
pub const DEPLOYMENT: TypeConst = ty("apps/v1", "Deployment");
pub const INFRASTRUCTURE: TypeConst = ty("config.openshift.io/v1", "Infrastructure");
pub const CLUSTER_OPERATOR: TypeConst = ty("config.openshift.io/v1", "ClusterOperator");
pub const CLUSTER_VERSION: TypeConst = ty("config.openshift.io/v1", "ClusterVersion");
pub const FEATURE_GATE: TypeConst = ty("config.openshift.io/v1", "FeatureGate");
pub const PROXY: TypeConst = ty("config.openshift.io/v1", "Proxy");
pub const CLOUD_CREDENTIAL: TypeConst = ty("operator.openshift.io/v1", "CloudCredential");
pub const MACHINE: TypeConst = ty("machine.openshift.io/v1beta1", "Machine");
pub const MACHINE_SET: TypeConst = ty("machine.openshift.io/v1beta1", "MachineSet");
pub const CONTROL_PLANE_MACHINE_SET: TypeConst = ty("machine.openshift.io/v1", "ControlPlaneMachineSet");
pub const MACHINE_HEALTH_CHECK: TypeConst = ty("machine.openshift.io/v1beta1", "MachineHealthCheck");
pub const MACHINE_AUTOSCALER: TypeConst = ty("autoscaling.openshift.io/v1beta1", "MachineAutoscaler");
pub const CUSTOM_RESOURCE_DEFINITION: TypeConst = ty("apiextensions.k8s.io/v1", "CustomResourceDefinition");

/// Well-known object locations in an OpenShift cluster.
pub mod names {
    /// The Infrastructure singleton.
    pub const INFRASTRUCTURE: &str = "cluster";
    /// The root vSphere credentials: keys `<server>.username` / `<server>.password`.
    pub const VSPHERE_CREDS_NAMESPACE: &str = "kube-system";
    pub const VSPHERE_CREDS: &str = "vsphere-creds";
    /// The cloud provider configuration: key `config`.
    pub const CLOUD_CONFIG_NAMESPACE: &str = "openshift-config";
    pub const CLOUD_CONFIG: &str = "cloud-provider-config";
    pub const CLOUD_CONFIG_KEY: &str = "config";
    /// The cluster-version operator Deployment.
    pub const CVO_NAMESPACE: &str = "openshift-cluster-version";
    pub const CVO: &str = "cluster-version-operator";
    /// The machine API namespace, home of Machines, MachineSets and the CPMS.
    pub const MACHINE_API_NAMESPACE: &str = "openshift-machine-api";
    pub const CPMS: &str = "cluster";
    /// The ClusterVersion singleton.
    pub const CLUSTER_VERSION: &str = "version";
    /// The FeatureGate singleton (the cluster's feature set).
    pub const FEATURE_GATE: &str = "cluster";
    /// The cloud credential operator's configuration.
    pub const CLOUD_CREDENTIAL: &str = "cluster";
    /// The Infrastructure CRD.
    pub const INFRASTRUCTURE_CRD: &str = "infrastructures.config.openshift.io";
    /// Label linking a Machine to its MachineSet.
    pub const MACHINESET_LABEL: &str = "machine.openshift.io/cluster-api-machineset";
    /// Label naming a Machine's role (master, worker, infra...).
    pub const MACHINE_ROLE_LABEL: &str = "machine.openshift.io/cluster-api-machine-role";
    /// Label and annotation naming a MachineSet's failure domain.
    pub const FAILURE_DOMAIN_LABEL: &str = "machine.openshift.io/failure-domain";
}
