//! The vCenter privileges an OpenShift cluster's user needs on each kind of object, as the
//! OpenShift installer checks them before it installs a cluster on vSphere
//! (`pkg/asset/installconfig/vsphere/permissions.go` in openshift/installer: the
//! `permissions` table, one group per object). After a migration the target vCenter's user
//! is that cluster's user (machine-api clones and deletes VMs with it, the CSI driver
//! creates disks, the CCM reads the inventory), so Preflight holds the target to the same
//! list.
//!
//! As the installer does, a privilege the vCenter does not define at all (an older release)
//! is not asked for; a vCenter that defines none of a group's privileges cannot be checked.

use std::collections::BTreeSet;

/// The kind of object a group of privileges is checked on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Group {
    /// The vCenter itself (its root folder): tagging, sessions, storage policies.
    VCenter,
    Datacenter,
    Cluster,
    /// A network (port group) the machines use.
    Portgroup,
    Datastore,
    ResourcePool,
    /// A VM folder that exists before the migration creates anything.
    Folder,
}

const VM_PRIVILEGES: &[&str] = &[
    "Resource.AssignVMToPool",
    "VApp.Import",
    "VirtualMachine.Config.AddExistingDisk",
    "VirtualMachine.Config.AddNewDisk",
    "VirtualMachine.Config.AddRemoveDevice",
    "VirtualMachine.Config.AdvancedConfig",
    "VirtualMachine.Config.Annotation",
    "VirtualMachine.Config.CPUCount",
    "VirtualMachine.Config.DiskExtend",
    "VirtualMachine.Config.DiskLease",
    "VirtualMachine.Config.EditDevice",
    "VirtualMachine.Config.Memory",
    "VirtualMachine.Config.RemoveDisk",
    "VirtualMachine.Config.Rename",
    "VirtualMachine.Config.ResetGuestInfo",
    "VirtualMachine.Config.Resource",
    "VirtualMachine.Config.Settings",
    "VirtualMachine.Config.UpgradeVirtualHardware",
    "VirtualMachine.Interact.GuestControl",
    "VirtualMachine.Interact.PowerOff",
    "VirtualMachine.Interact.PowerOn",
    "VirtualMachine.Interact.Reset",
    "VirtualMachine.Inventory.Create",
    "VirtualMachine.Inventory.CreateFromExisting",
    "VirtualMachine.Inventory.Delete",
    "VirtualMachine.Provisioning.Clone",
    "VirtualMachine.Provisioning.DeployTemplate",
    "VirtualMachine.Provisioning.MarkAsTemplate",
    "InventoryService.Tagging.ObjectAttachable",
];

impl Group {
    /// What the object is called in a message.
    pub fn noun(self) -> &'static str {
        match self {
            Group::VCenter => "vCenter",
            Group::Datacenter => "datacenter",
            Group::Cluster => "compute cluster",
            Group::Portgroup => "network",
            Group::Datastore => "datastore",
            Group::ResourcePool => "resource pool",
            Group::Folder => "VM folder",
        }
    }

    /// The privileges the installer requires on an object of this group.
    pub fn required(self) -> Vec<&'static str> {
        match self {
            Group::VCenter => vec![
                "Cns.Searchable",
                "InventoryService.Tagging.AttachTag",
                "InventoryService.Tagging.CreateCategory",
                "InventoryService.Tagging.CreateTag",
                "InventoryService.Tagging.DeleteCategory",
                "InventoryService.Tagging.DeleteTag",
                "InventoryService.Tagging.EditCategory",
                "InventoryService.Tagging.EditTag",
                "Sessions.ValidateSession",
                "StorageProfile.Update",
                "StorageProfile.View",
            ],
            Group::Cluster | Group::ResourcePool => {
                vec![
                    "Resource.AssignVMToPool",
                    "VApp.AssignResourcePool",
                    "VApp.Import",
                    "VirtualMachine.Config.AddNewDisk",
                ]
            }
            Group::Portgroup => vec!["Network.Assign"],
            Group::Datastore => vec![
                "Datastore.AllocateSpace",
                "Datastore.Browse",
                "Datastore.FileManagement",
                "InventoryService.Tagging.ObjectAttachable",
            ],
            Group::Folder => VM_PRIVILEGES.to_vec(),
            Group::Datacenter => {
                let mut all = VM_PRIVILEGES.to_vec();
                all.extend(["Folder.Create", "Folder.Delete"]);
                all
            }
        }
    }
}

/// What a check of one object found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every required privilege the server defines is held.
    Held,
    /// These required privileges (defined by the server) are not held.
    Missing(Vec<&'static str>),
    /// The server defines none of the group's privileges: nothing can be verified.
    Unverifiable,
}

/// Compare what the user holds on an object of `group` with what it needs.
pub fn verdict(group: Group, held: &[String], defined: &[String]) -> Verdict {
    let held: BTreeSet<&str> = held.iter().map(String::as_str).collect();
    let defined: BTreeSet<&str> = defined.iter().map(String::as_str).collect();
    let asked: Vec<&'static str> = group.required().into_iter().filter(|p| defined.contains(p)).collect();
    if asked.is_empty() {
        return Verdict::Unverifiable;
    }
    let missing: Vec<&'static str> = asked.into_iter().filter(|p| !held.contains(p)).collect();
    if missing.is_empty() { Verdict::Held } else { Verdict::Missing(missing) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn everything_defined_and_held_passes() {
        let all = strings(&Group::Datacenter.required());
        assert_eq!(verdict(Group::Datacenter, &all, &all), Verdict::Held);
    }

    #[test]
    fn missing_privileges_are_named_in_the_tables_order() {
        let defined = strings(&Group::Datastore.required());
        let held = strings(&["Datastore.FileManagement", "InventoryService.Tagging.ObjectAttachable"]);
        assert_eq!(
            verdict(Group::Datastore, &held, &defined),
            Verdict::Missing(vec!["Datastore.AllocateSpace", "Datastore.Browse"])
        );
    }

    #[test]
    fn a_privilege_the_server_does_not_define_is_not_asked_for() {
        // An older vCenter without CNS: Cns.Searchable is pruned, as the installer prunes it.
        let defined: Vec<String> =
            Group::VCenter.required().into_iter().filter(|p| *p != "Cns.Searchable").map(String::from).collect();
        assert_eq!(verdict(Group::VCenter, &defined, &defined), Verdict::Held);
    }

    #[test]
    fn a_server_that_defines_none_of_them_cannot_be_verified() {
        assert_eq!(verdict(Group::Portgroup, &[], &strings(&["System.Read"])), Verdict::Unverifiable);
    }

    #[test]
    fn the_fake_vcenter_defines_every_required_privilege() {
        // FakeHost's catalogue must cover the table, or the phases' native tests would not
        // check what the real vCenter is asked.
        let fake: BTreeSet<&str> = vsm_sdk::testing::vsphere::PRIVILEGES.iter().copied().collect();
        for g in [
            Group::VCenter,
            Group::Datacenter,
            Group::Cluster,
            Group::Portgroup,
            Group::Datastore,
            Group::ResourcePool,
            Group::Folder,
        ] {
            for p in g.required() {
                assert!(fake.contains(p), "{p} ({g:?}) is not in the fake vCenter's catalogue");
            }
        }
    }
}
