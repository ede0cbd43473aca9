//! An IP address management provider (in a cluster: the one the static-IP MachineSets'
//! `addressesFromPools` name, a third party's): every IPAddressClaim the vSphere actuator
//! makes for a Machine is bound to an IPAddress from its pool, `192.168.10.<n>/24` with
//! gateway `192.168.10.1` (the seed's static-IP network); the address is owned by its
//! claim. Only with the environment's real machine-api (which installs the CRDs).

use std::sync::Arc;

use anyhow::Result;
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, ListParams, Patch, PostParams};
use serde_json::json;

use super::objects::{self as o, nonempty_at};
use super::runtime::Shared;

const MANAGER: &str = "vsm-sim-ipam";
const GROUP: &str = "ipam.cluster.x-k8s.io";
const VERSION: &str = "v1beta1";

fn claims(client: &kube::Client) -> Api<DynamicObject> {
    let ar = o::resource(GROUP, VERSION, "IPAddressClaim", "ipaddressclaims");
    Api::namespaced_with(client.clone(), o::MACHINE_API_NS, &ar)
}

fn addresses(client: &kube::Client) -> Api<DynamicObject> {
    let ar = o::resource(GROUP, VERSION, "IPAddress", "ipaddresses");
    Api::namespaced_with(client.clone(), o::MACHINE_API_NS, &ar)
}

/// The host part of a claim's address: 2..=254, stable per claim name.
fn host_part(claim: &str) -> u8 {
    let h = claim.bytes().fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    (h % 253) as u8 + 2
}

pub(crate) async fn sync(sh: Arc<Shared>) -> Result<()> {
    let (claims, addresses) = (claims(&sh.client), addresses(&sh.client));
    for claim in claims.list(&ListParams::default()).await?.items {
        if o::is_deleting(&claim) || nonempty_at(&claim.data, "/status/addressRef/name").is_some() {
            continue;
        }
        let name = claim.name_any();
        let address: DynamicObject = serde_json::from_value(json!({
            "apiVersion": format!("{GROUP}/{VERSION}"), "kind": "IPAddress",
            "metadata": {"name": name, "namespace": o::MACHINE_API_NS,
                         "ownerReferences": [o::controller_ref(&format!("{GROUP}/{VERSION}"), "IPAddressClaim", &name,
                                                               &claim.uid().unwrap_or_default())]},
            "spec": {
                "address": format!("192.168.10.{}", host_part(&name)),
                "prefix": 24,
                "gateway": "192.168.10.1",
                "claimRef": {"name": name},
                "poolRef": claim.data["spec"]["poolRef"],
            },
        }))?;
        match addresses.create(&PostParams::default(), &address).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
        let status = json!({"status": {"addressRef": {"name": name}}});
        claims.patch_status(&name, &o::merge_params(MANAGER), &Patch::Merge(status)).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn addresses_stay_in_the_subnet() {
        for name in ["a", "worker-0-claim-0-0", "x".repeat(300).as_str()] {
            assert!((2..=254).contains(&super::host_part(name)));
        }
    }
}
