//! The garbage collector's part (kube-controller-manager, which the environment does not
//! run): Machines whose controlling MachineSet is gone are deleted, as their owner
//! reference asks.

use std::collections::HashSet;
use std::sync::Arc;

use anyhow::Result;
use kube::ResourceExt;

use super::objects::{self as o, is_deleting};
use super::runtime::Shared;

/// Deletes every Machine whose controlling MachineSet is gone.
pub(crate) async fn sync(sh: Arc<Shared>) -> Result<()> {
    let machines = sh.stores.machines.state();
    let sets = sh.stores.machine_sets.state();
    let uids: HashSet<String> = sets.iter().filter_map(|s| s.uid()).collect();
    let api = o::machines_api(&sh.client);
    let set_api = o::machine_sets_api(&sh.client);
    for m in &machines {
        let Some(owner) = o::controller_uid(m.as_ref(), "MachineSet") else { continue };
        if uids.contains(&owner) || is_deleting(m.as_ref()) {
            continue;
        }
        // The cache of MachineSets may lag behind the one of Machines: ask the API server.
        let owner_name = m.owner_references().iter().find(|r| r.uid == owner).map(|r| r.name.clone());
        if let Some(n) = owner_name
            && set_api.get_opt(&n).await?.is_some_and(|s| s.uid().as_deref() == Some(owner.as_str()))
        {
            continue;
        }
        o::delete_ignore_missing(&api, &m.name_any(), None).await?;
    }
    Ok(())
}
