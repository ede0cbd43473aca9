//! Where the seed puts things, as pure functions of the vCenters' inventories
//! ([`Inventory`]): a failure domain per compute cluster, the template each domain clones
//! from, which domain each master and worker MachineSet is in, and how many machines each
//! set gets.
//!
//! - Failure domain of cluster `i` of a vCenter: name, zone and datastore of that cluster,
//!   the region of its datacenter, the vCenter's address as `server`, the cluster's root
//!   resource pool, folder `/<dc>/vm/<infraID>` (one per datacenter, as the installer makes
//!   it), network `VM Network`.
//! - Templates: a vCenter with one cluster has `/<dc>/vm/<template>` (the classic seed's); a
//!   vCenter with several has in addition one per cluster, `/<dc>/vm/<template>-<zone>`, on
//!   that cluster's datastore and in its pool (the installer imports the RHCOS image once
//!   per failure domain, as `<infraID>-rhcos-<region>-<zone>`).
//! - Masters: master `i` in domain `i mod n` (the control-plane machine set operator's
//!   order). Worker MachineSets of a zonal seed: one per domain, `<infraID>-worker-<i>` in
//!   domain `i`, the workers spread as the installer spreads them (`total / n`, the first
//!   `total mod n` sets one more).

use crate::vcsim::Inventory;

use super::provider::FailureDomain;

/// One vCenter as the seed sees it: the address OpenShift stores, its port, its inventory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VCenterLayout {
    pub host: String,
    pub port: u16,
    pub inventory: Inventory,
}

/// A template VM to make: inventory paths of its folder, pool and datastore, and its name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplatePlan {
    pub folder: String,
    pub name: String,
    pub pool: String,
    pub datastore: String,
}

impl TemplatePlan {
    /// `<folder>/<name>`
    pub fn path(&self) -> String {
        format!("{}/{}", self.folder, self.name)
    }
}

/// The name of the template of cluster `i` (see the module doc).
fn template_name(inv: &Inventory, i: usize, base: &str) -> String {
    if inv.clusters.len() == 1 { base.to_string() } else { format!("{base}-{}", inv.clusters[i].zone) }
}

/// The failure domain of cluster `i` of `vc`.
pub fn domain(vc: &VCenterLayout, i: usize, infra_id: &str, template: &str) -> FailureDomain {
    let inv = &vc.inventory;
    let c = &inv.clusters[i];
    FailureDomain {
        name: c.failure_domain.clone(),
        region: inv.region.clone(),
        zone: c.zone.clone(),
        server: vc.host.clone(),
        datacenter: inv.datacenter.clone(),
        compute_cluster: inv.cluster_path(i),
        datastore: inv.datastore_path(i),
        networks: vec![inv.network.clone()],
        resource_pool: inv.resource_pool_path(i),
        folder: format!("{}/{infra_id}", inv.vm_folder_path()),
        template: format!("{}/{}", inv.vm_folder_path(), template_name(inv, i, template)),
    }
}

/// A failure domain for every cluster of every vCenter, in order.
pub fn all_domains(vcs: &[VCenterLayout], infra_id: &str, template: &str) -> Vec<FailureDomain> {
    vcs.iter().flat_map(|vc| (0..vc.inventory.clusters.len()).map(move |i| domain(vc, i, infra_id, template))).collect()
}

/// The templates of `vc` (see the module doc), the plain one first.
pub fn templates(vc: &VCenterLayout, base: &str) -> Vec<TemplatePlan> {
    let inv = &vc.inventory;
    let plan = |i: usize, name: String| TemplatePlan {
        folder: inv.vm_folder_path(),
        name,
        pool: inv.resource_pool_path(i),
        datastore: inv.datastore_path(i),
    };
    let mut out = vec![plan(0, base.to_string())];
    if inv.clusters.len() > 1 {
        out.extend((0..inv.clusters.len()).map(|i| plan(i, template_name(inv, i, base))));
    }
    out
}

/// Machines of MachineSet `idx` of `sets` when `total` are spread over them (the installer's
/// rule).
pub fn spread(total: u32, sets: u32, idx: u32) -> u32 {
    total / sets + u32::from(idx < total % sets)
}

/// The domain (index) of master `i` among `domains`.
pub fn master_domain(i: usize, domains: usize) -> usize {
    i % domains
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vcsim::{VcsimOptions, zonal_inventory};

    fn vc(host: &str, inventory: Inventory) -> VCenterLayout {
        VCenterLayout { host: host.into(), port: 443, inventory }
    }

    #[test]
    fn the_classic_source_keeps_its_failure_domain_and_template() {
        let src = vc("127.0.0.1", VcsimOptions::source().inventory.unwrap());
        let fd = domain(&src, 0, "infra-1", "rhcos-template");
        assert_eq!(fd.name, "source-fd");
        assert_eq!((fd.region.as_str(), fd.zone.as_str()), ("src-region", "src-zone-a"));
        assert_eq!(fd.compute_cluster, crate::vcsim::source::CLUSTER_PATH);
        assert_eq!(fd.datastore, crate::vcsim::source::DATASTORE_PATH);
        assert_eq!(fd.resource_pool, crate::vcsim::source::RESOURCE_POOL_PATH);
        assert_eq!(fd.folder, "/src-dc/vm/infra-1");
        assert_eq!(fd.template, "/src-dc/vm/rhcos-template");
        assert_eq!(
            templates(&src, "rhcos-template").iter().map(TemplatePlan::path).collect::<Vec<_>>(),
            ["/src-dc/vm/rhcos-template"]
        );
    }

    #[test]
    fn a_zonal_vcenter_has_a_domain_and_a_template_per_cluster() {
        let vcs = [vc("127.0.0.1", zonal_inventory("src", 2)), vc("127.0.0.12", zonal_inventory("src2", 1))];
        let fds = all_domains(&vcs, "id", "rhcos");
        let names: Vec<&str> = fds.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["src-fd-a", "src-fd-b", "src2-fd-a"]);
        assert_eq!(fds[1].compute_cluster, "/src-dc/host/src-cluster-b");
        assert_eq!(fds[1].datastore, "/src-dc/datastore/src-ds-b");
        assert_eq!(fds[1].template, "/src-dc/vm/rhcos-src-zone-b");
        assert_eq!(fds[2].server, "127.0.0.12");
        assert_eq!((fds[2].region.as_str(), fds[2].zone.as_str()), ("src2-region", "src2-zone-a"));
        assert_eq!(fds[2].template, "/src2-dc/vm/rhcos", "one cluster: the plain template");
        let t = templates(&vcs[0], "rhcos");
        assert_eq!(
            t.iter().map(TemplatePlan::path).collect::<Vec<_>>(),
            ["/src-dc/vm/rhcos", "/src-dc/vm/rhcos-src-zone-a", "/src-dc/vm/rhcos-src-zone-b"]
        );
        assert_eq!(t[2].pool, "/src-dc/host/src-cluster-b/Resources");
        // Every domain's template is one the seed makes.
        for fd in &fds {
            let vc = vcs.iter().find(|v| v.host == fd.server).unwrap();
            assert!(templates(vc, "rhcos").iter().any(|t| t.path() == fd.template), "{}", fd.name);
        }
    }

    #[test]
    fn workers_and_masters_are_spread_like_the_installer_does() {
        assert_eq!((0..3).map(|i| spread(7, 3, i)).collect::<Vec<_>>(), [3, 2, 2]);
        assert_eq!((0..3).map(|i| spread(2, 3, i)).collect::<Vec<_>>(), [1, 1, 0]);
        assert_eq!((0..3).map(|i| master_domain(i, 3)).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!((0..3).map(|i| master_domain(i, 2)).collect::<Vec<_>>(), [0, 1, 0]);
    }
}
