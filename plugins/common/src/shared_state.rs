//! Keys of the migration-scope state (`cx.shared()`) that one phase writes and others
//! read. Each key has one owner, the phase that writes it; the others only read it. A key
//! lives here, not in a phase crate, so writer and readers cannot drift apart.

/// The cluster-version operator's replica count before the migration, a JSON number.
///
/// Owner: DisableCVO, which records it once, before it scales the CVO to zero, and scales
/// back to it on rollback. Read by Verify, which scales the CVO back to it at the end.
pub const CVO_REPLICAS: &str = "cvo-replicas";
