//! Keys of the migration-scope state (`cx.shared()`) that one phase writes and others
//! read. Each key has one owner, the phase that writes it; the others only read it. A key
//! lives here, not in a phase crate, so writer and readers cannot drift apart.

/// The cluster-version operator's replica count before the migration, a JSON number.
///
/// Owner: DisableCVO, which records it once, before it scales the CVO to zero, and scales
/// back to it on rollback. Read by Verify, which scales the CVO back to it at the end.
pub const CVO_REPLICAS: &str = "cvo-replicas";

/// The MachineSets the migration replaces, a JSON list of
/// [`Replacement`](crate::replacements::Replacement).
///
/// Owner: CreateWorkers, which records it at its first call, before it creates a set.
/// Read by ScaleOldMachines (a source set is scaled down only once its replacement is
/// Ready), Cleanup and Verify (every set is checked).
pub const MACHINE_SET_REPLACEMENTS: &str = "machine-set-replacements";

/// SHA-256 fingerprints (lowercase hex) of the target vCenters' CA certificates that the
/// migration put into the cluster's trust, a JSON list of strings.
///
/// Owner: UpdateConfig, which records them before it writes a trust bundle. Read by
/// RestartPods, which restarts the vCenter clients only once the bundles their pods mount
/// hold them, and Cleanup, which never removes them.
pub const TARGET_CA_FINGERPRINTS: &str = "target-ca-fingerprints";
