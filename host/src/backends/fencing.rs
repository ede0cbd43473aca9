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
use crate::runtime::bindings::{
    AboutInfo, CategorySpec, Ensured, ObjectKind, ObjectRef, TagInfo, VmInfo, VsphereError,
};
use crate::runtime::{CallScope, VsphereBackend};

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

impl FencedVsphere {
    fn check(&self) -> Result<(), VsphereError> {
        if self.leader.is_leader() { Ok(()) } else { Err(VsphereError::Transient(NotLeader.to_string())) }
    }
}

#[async_trait]
impl VsphereBackend for FencedVsphere {
    async fn about(&self, s: &CallScope, server: &str) -> Result<AboutInfo, VsphereError> {
        self.inner.about(s, server).await
    }
    async fn find_object(
        &self,
        s: &CallScope,
        server: &str,
        kind: ObjectKind,
        path: &str,
    ) -> Result<ObjectRef, VsphereError> {
        self.inner.find_object(s, server, kind, path).await
    }
    async fn list_vms(&self, s: &CallScope, server: &str, folder: &str) -> Result<Vec<VmInfo>, VsphereError> {
        self.inner.list_vms(s, server, folder).await
    }
    async fn create_folder(&self, s: &CallScope, server: &str, path: &str) -> Result<Ensured, VsphereError> {
        self.check()?;
        self.inner.create_folder(s, server, path).await
    }
    async fn delete_folder(&self, s: &CallScope, server: &str, path: &str) -> Result<bool, VsphereError> {
        self.check()?;
        self.inner.delete_folder(s, server, path).await
    }
    async fn ensure_category(&self, s: &CallScope, server: &str, spec: &CategorySpec) -> Result<Ensured, VsphereError> {
        self.check()?;
        self.inner.ensure_category(s, server, spec).await
    }
    async fn ensure_tag(
        &self,
        s: &CallScope,
        server: &str,
        category_id: &str,
        name: &str,
        description: &str,
    ) -> Result<Ensured, VsphereError> {
        self.check()?;
        self.inner.ensure_tag(s, server, category_id, name, description).await
    }
    async fn delete_tag(&self, s: &CallScope, server: &str, tag_id: &str) -> Result<bool, VsphereError> {
        self.check()?;
        self.inner.delete_tag(s, server, tag_id).await
    }
    async fn delete_category(&self, s: &CallScope, server: &str, category_id: &str) -> Result<bool, VsphereError> {
        self.check()?;
        self.inner.delete_category(s, server, category_id).await
    }
    async fn attach_tag(
        &self,
        s: &CallScope,
        server: &str,
        tag_id: &str,
        target: &ObjectRef,
    ) -> Result<(), VsphereError> {
        self.check()?;
        self.inner.attach_tag(s, server, tag_id, target).await
    }
    async fn detach_tag(
        &self,
        s: &CallScope,
        server: &str,
        tag_id: &str,
        target: &ObjectRef,
    ) -> Result<(), VsphereError> {
        self.check()?;
        self.inner.detach_tag(s, server, tag_id, target).await
    }
    async fn list_attached_tags(
        &self,
        s: &CallScope,
        server: &str,
        target: &ObjectRef,
    ) -> Result<Vec<TagInfo>, VsphereError> {
        self.inner.list_attached_tags(s, server, target).await
    }
}
