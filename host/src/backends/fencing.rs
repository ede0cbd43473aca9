//! The fencing layer: once this replica may have lost the lease (frozen, partitioned,
//! deposed), nothing it does on behalf of a migration changes the world.
//!
//! - Kubernetes: a layer in the operator's client refuses every request that is not a
//!   read (GET, or a watch/list) while this replica is not the leader. Every backend and
//!   store (phase writes, journal, state, plan overlay, restores object by object,
//!   finalizer clean-up, status and Events) shares that client, so no write path goes
//!   around it. Leader election itself uses its own, unfenced client.
//! - vSphere: [`FencedVsphere`] refuses the mutating operations; reads pass.
//!
//! What remains is the race between the check and the request leaving the process: no
//! server-side fencing token exists for arbitrary writes.

use std::sync::Arc;

use async_trait::async_trait;
use http::{Method, Request};
use kube::client::Body;

use crate::leader::LeaderHandle;
use crate::runtime::bindings::VsphereError;
use crate::runtime::{VsphereBackend, VsphereOp};

/// The refusal.
#[derive(Debug, thiserror::Error)]
#[error("this operator replica is no longer the leader: nothing was changed")]
pub struct NotLeader;

/// `client`, refusing every write while `leader` says this replica does not lead.
pub fn client(client: kube::Client, leader: LeaderHandle) -> kube::Client {
    let default_namespace = client.default_namespace().to_string();
    let service = tower::service_fn(move |request: Request<Body>| {
        let (client, leader) = (client.clone(), leader.clone());
        async move {
            if request.method() != Method::GET && !leader.is_leader() {
                return Err(Box::new(NotLeader) as tower::BoxError);
            }
            client.send(request).await.map_err(tower::BoxError::from)
        }
    });
    kube::Client::new(service, default_namespace)
}

/// vSphere operations, the mutating ones refused while this replica does not lead.
pub struct FencedVsphere {
    pub inner: Arc<dyn VsphereBackend>,
    pub leader: LeaderHandle,
}

/// Reads go on; a change is refused while this replica does not lead.
#[async_trait]
impl VsphereBackend for FencedVsphere {
    fn route(&self, op: VsphereOp) -> Result<&dyn VsphereBackend, VsphereError> {
        if op.is_mutation() && !self.leader.is_leader() {
            return Err(VsphereError::Transient(NotLeader.to_string()));
        }
        Ok(self.inner.as_ref())
    }
}
