//! The live vSphere backend: which credentials and TLS settings a server uses, the calls
//! on the shared session pool, and conversion between the client's types and the
//! contract's.

use std::sync::Arc;

use async_trait::async_trait;

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use vsm_vsphere as vs;

use super::Outputs;
use super::journal::ObjectRefJson;
use crate::api::{MigrationSpec, SourceVCenter};
use crate::runtime::bindings::{
    AboutInfo, Cardinality, CategoryInfo, CategorySpec, Ensured, EntityPrivileges, ObjectKind, ObjectRef,
    PrivilegeReport, TagInfo, VmInfo, VsphereError,
};
use crate::runtime::{CallScope, VsphereBackend};

/// The root credentials Secret OpenShift keeps for its vCenters.
pub const ROOT_CREDS: (&str, &str) = ("kube-system", "vsphere-creds");

/// Map the client's error to the contract's.
pub fn map_error(e: vs::VsphereError) -> VsphereError {
    use vs::VsphereError as E;
    let text = e.to_string();
    match e {
        E::NotFound { .. } => VsphereError::NotFound(text),
        E::AlreadyExists { .. } => VsphereError::AlreadyExists(text),
        E::PermissionDenied { .. } => VsphereError::PermissionDenied(text),
        E::AuthFailed { .. } | E::NotAuthenticated { .. } => VsphereError::AuthFailed(text),
        E::Transient { .. } => VsphereError::Transient(text),
        E::Timeout { .. } => VsphereError::Timeout(text),
        E::Tls { .. } => VsphereError::Tls(text),
        E::Invalid { .. } | E::Fault { .. } | E::Protocol { .. } => VsphereError::Invalid(text),
    }
}

pub fn kind_to_client(kind: ObjectKind) -> vs::ObjectKind {
    match kind {
        ObjectKind::Datacenter => vs::ObjectKind::Datacenter,
        ObjectKind::ComputeCluster => vs::ObjectKind::ComputeCluster,
        ObjectKind::Datastore => vs::ObjectKind::Datastore,
        ObjectKind::Network => vs::ObjectKind::Network,
        ObjectKind::ResourcePool => vs::ObjectKind::ResourcePool,
        ObjectKind::Folder => vs::ObjectKind::Folder,
        ObjectKind::VirtualMachine => vs::ObjectKind::VirtualMachine,
    }
}

fn kind_from_client(kind: vs::ObjectKind) -> ObjectKind {
    match kind {
        vs::ObjectKind::Datacenter => ObjectKind::Datacenter,
        vs::ObjectKind::ComputeCluster => ObjectKind::ComputeCluster,
        vs::ObjectKind::Datastore => ObjectKind::Datastore,
        vs::ObjectKind::Network => ObjectKind::Network,
        vs::ObjectKind::ResourcePool => ObjectKind::ResourcePool,
        vs::ObjectKind::Folder => ObjectKind::Folder,
        vs::ObjectKind::VirtualMachine => ObjectKind::VirtualMachine,
    }
}

/// The contract's object reference: the managed object id travels as `Type:value`, since
/// a network may be a `Network` or a `DistributedVirtualPortgroup`.
pub fn to_ref(mo: &vs::ManagedObject) -> ObjectRef {
    ObjectRef {
        kind: kind_from_client(mo.kind),
        moref: format!("{}:{}", mo.moref.type_name, mo.moref.value),
        path: mo.path.clone(),
    }
}

pub fn from_ref(r: &ObjectRef) -> Result<vs::ManagedObject, VsphereError> {
    let (type_name, value) = r
        .moref
        .split_once(':')
        .ok_or_else(|| VsphereError::Invalid(format!("object reference {:?} is not Type:value", r.moref)))?;
    Ok(vs::ManagedObject {
        kind: kind_to_client(r.kind),
        moref: vs::MoRef { type_name: type_name.to_string(), value: value.to_string() },
        path: r.path.clone(),
    })
}

pub fn from_ref_json(r: &ObjectRefJson) -> Result<vs::ManagedObject, VsphereError> {
    let kind = match r.kind.as_str() {
        "Datacenter" => ObjectKind::Datacenter,
        "ComputeCluster" => ObjectKind::ComputeCluster,
        "Datastore" => ObjectKind::Datastore,
        "Network" => ObjectKind::Network,
        "ResourcePool" => ObjectKind::ResourcePool,
        "Folder" => ObjectKind::Folder,
        _ => ObjectKind::VirtualMachine,
    };
    from_ref(&ObjectRef { kind, moref: r.moref.clone(), path: r.path.clone() })
}

pub fn about(a: vs::About) -> AboutInfo {
    AboutInfo { product: a.full_name, version: a.version, api_version: a.api_version, instance_uuid: a.instance_uuid }
}

pub fn vm(v: vs::VmSummary) -> VmInfo {
    VmInfo {
        name: v.name,
        moref: format!("{}:{}", v.moref.type_name, v.moref.value),
        path: v.path,
        uuid: v.uuid,
        power_state: format!("{:?}", v.power_state),
        template: v.template,
    }
}

pub fn tag(t: vs::TagInfo) -> TagInfo {
    TagInfo {
        id: t.id,
        name: t.name,
        category_id: t.category_id,
        category_name: t.category_name,
        cardinality: cardinality(t.cardinality),
    }
}

pub fn cardinality(c: vs::Cardinality) -> Cardinality {
    match c {
        vs::Cardinality::Single => Cardinality::Single,
        vs::Cardinality::Multiple => Cardinality::Multiple,
    }
}

pub fn category_spec(s: &CategorySpec) -> vs::CategorySpec {
    vs::CategorySpec {
        name: s.name.clone(),
        description: s.description.clone(),
        cardinality: match s.cardinality {
            Cardinality::Single => vs::Cardinality::Single,
            Cardinality::Multiple => vs::Cardinality::Multiple,
        },
        associable_types: s.associable_types.clone(),
    }
}

pub fn ensured(id: String, created: bool) -> Ensured {
    Ensured { id, created }
}

/// Resolves a server name (as in failure domains and the Infrastructure) to how to reach
/// it: address, credentials and TLS trust. Credentials are read for every call and never
/// leave the host.
pub struct Endpoints {
    pub client: kube::Client,
    pub spec: MigrationSpec,
    pub migration_namespace: String,
    pub sources: Vec<SourceVCenter>,
}

fn key_of(data: &std::collections::BTreeMap<String, k8s_openapi::ByteString>, key: &str) -> Option<String> {
    data.get(key).and_then(|b| String::from_utf8(b.0.clone()).ok()).map(|s| s.trim_end_matches('\n').to_string())
}

impl Endpoints {
    pub fn is_target(&self, server: &str) -> bool {
        self.spec.target_servers().contains(&server)
    }

    async fn secret(&self, namespace: &str, name: &str) -> Result<Secret, VsphereError> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        match api.get_opt(name).await {
            Ok(Some(s)) => Ok(s),
            Ok(None) => Err(VsphereError::Invalid(format!("Secret {namespace}/{name} does not exist"))),
            Err(e) => Err(VsphereError::Transient(format!("reading Secret {namespace}/{name}: {e}"))),
        }
    }

    /// Where the credentials for `server` live.
    pub fn credentials_secret(&self, server: &str) -> (String, String) {
        if self.is_target(server) {
            let r = &self.spec.target_credentials_secret;
            (r.namespace.clone().unwrap_or_else(|| self.migration_namespace.clone()), r.name.clone())
        } else {
            (ROOT_CREDS.0.to_string(), ROOT_CREDS.1.to_string())
        }
    }

    pub async fn resolve(&self, server: &str) -> Result<vs::ServerSpec, VsphereError> {
        let (ns, name) = self.credentials_secret(server);
        let secret = self.secret(&ns, &name).await?;
        let data = secret.data.unwrap_or_default();
        let (user_key, pass_key) = (format!("{server}.username"), format!("{server}.password"));
        let (Some(username), Some(password)) = (key_of(&data, &user_key), key_of(&data, &pass_key)) else {
            return Err(VsphereError::Invalid(format!(
                "no credentials for vCenter {server}: Secret {ns}/{name} needs keys {user_key} and {pass_key}"
            )));
        };

        let connection = self.spec.connection(server);
        let port = connection
            .and_then(|c| c.port)
            .or_else(|| self.sources.iter().find(|s| s.server == server).map(|s| s.port))
            .unwrap_or(443);
        let mut tls = vs::TlsPolicy::default();
        if let Some(c) = connection {
            tls.insecure = c.insecure;
            tls.thumbprint_sha256 = c.thumbprint.clone();
            if let Some(ca) = &c.ca_secret {
                let ns = ca.namespace.clone().unwrap_or_else(|| self.migration_namespace.clone());
                let key = ca.key.clone().unwrap_or_else(|| "ca.crt".into());
                let secret = self.secret(&ns, &ca.name).await?;
                let pem = key_of(&secret.data.unwrap_or_default(), &key)
                    .ok_or_else(|| VsphereError::Invalid(format!("CA Secret {ns}/{} has no key {key}", ca.name)))?;
                tls.ca_bundle_pem = Some(pem);
            }
        }
        Ok(vs::ServerSpec {
            server: format!("{server}:{port}"),
            credentials: vs::Credentials::new(username, password),
            tls,
        })
    }

    pub async fn client(&self, pool: &vs::SessionPool, server: &str) -> Result<Arc<vs::Client>, VsphereError> {
        let spec = self.resolve(server).await?;
        pool.client(&spec).await.map_err(map_error)
    }
}

/// vSphere itself: each call on the host-owned session for its server.
pub struct LiveVsphere {
    pub endpoints: Endpoints,
    pub pool: vs::SessionPool,
    pub outputs: Outputs,
    /// The session of each server, resolved (credentials read) once per phase call.
    clients: tokio::sync::Mutex<std::collections::HashMap<String, Arc<vs::Client>>>,
}

impl LiveVsphere {
    pub fn new(endpoints: Endpoints, pool: vs::SessionPool, outputs: Outputs) -> Self {
        LiveVsphere { endpoints, pool, outputs, clients: Default::default() }
    }

    /// The session for `server`, counting the operation it is for.
    pub async fn client(&self, server: &str) -> Result<Arc<vs::Client>, VsphereError> {
        self.outputs.count_vsphere();
        let mut clients = self.clients.lock().await;
        if let Some(c) = clients.get(server) {
            return Ok(c.clone());
        }
        let client = self.endpoints.client(&self.pool, server).await?;
        clients.insert(server.to_string(), client.clone());
        Ok(client)
    }
}

#[async_trait]
impl VsphereBackend for LiveVsphere {
    async fn about(&self, _: &CallScope, server: &str) -> Result<AboutInfo, VsphereError> {
        Ok(about(self.client(server).await?.about().await.map_err(map_error)?))
    }

    async fn find_object(
        &self,
        _: &CallScope,
        server: &str,
        kind: ObjectKind,
        path: &str,
    ) -> Result<ObjectRef, VsphereError> {
        let client = self.client(server).await?;
        Ok(to_ref(&client.find(kind_to_client(kind), path).await.map_err(map_error)?))
    }

    async fn list_vms(&self, _: &CallScope, server: &str, folder: &str) -> Result<Vec<VmInfo>, VsphereError> {
        let client = self.client(server).await?;
        Ok(client.list_vms(folder).await.map_err(map_error)?.into_iter().map(vm).collect())
    }

    async fn create_folder(&self, _: &CallScope, server: &str, path: &str) -> Result<Ensured, VsphereError> {
        if folder_levels(path).is_empty() {
            return Err(VsphereError::Invalid(format!("{path} is not a VM folder path (/<datacenter>/vm/<folder>)")));
        }
        let (mo, created) = self.client(server).await?.create_folder(path).await.map_err(map_error)?;
        Ok(ensured(to_ref(&mo).moref, created))
    }

    async fn delete_folder(&self, _: &CallScope, server: &str, path: &str) -> Result<bool, VsphereError> {
        self.client(server).await?.delete_folder(path).await.map_err(map_error)
    }

    async fn ensure_category(&self, _: &CallScope, server: &str, spec: &CategorySpec) -> Result<Ensured, VsphereError> {
        let (id, created) =
            self.client(server).await?.ensure_category(&category_spec(spec)).await.map_err(map_error)?;
        Ok(ensured(id, created))
    }

    async fn ensure_tag(
        &self,
        _: &CallScope,
        server: &str,
        category_id: &str,
        name: &str,
        description: &str,
    ) -> Result<Ensured, VsphereError> {
        let client = self.client(server).await?;
        let (id, created) = client.ensure_tag(category_id, name, description).await.map_err(map_error)?;
        Ok(ensured(id, created))
    }

    async fn delete_tag(&self, _: &CallScope, server: &str, tag_id: &str) -> Result<bool, VsphereError> {
        self.client(server).await?.delete_tag(tag_id).await.map_err(map_error)
    }

    async fn delete_category(&self, _: &CallScope, server: &str, category_id: &str) -> Result<bool, VsphereError> {
        self.client(server).await?.delete_category(category_id).await.map_err(map_error)
    }

    /// Idempotent: a tag already attached is left as it is.
    async fn attach_tag(
        &self,
        _: &CallScope,
        server: &str,
        tag_id: &str,
        target: &ObjectRef,
    ) -> Result<(), VsphereError> {
        let mo = from_ref(target)?;
        let client = self.client(server).await?;
        if client.list_attached_tags(&mo).await.map_err(map_error)?.iter().any(|t| t.id == tag_id) {
            return Ok(());
        }
        client.attach_tag(tag_id, &mo).await.map_err(map_error)
    }

    /// Idempotent: a tag that is not attached (or no longer exists) is fine.
    async fn detach_tag(
        &self,
        _: &CallScope,
        server: &str,
        tag_id: &str,
        target: &ObjectRef,
    ) -> Result<(), VsphereError> {
        let mo = from_ref(target)?;
        match self.client(server).await?.detach_tag(tag_id, &mo).await {
            Ok(()) | Err(vs::VsphereError::NotFound { .. }) => Ok(()),
            Err(e) => Err(map_error(e)),
        }
    }

    async fn list_attached_tags(
        &self,
        _: &CallScope,
        server: &str,
        target: &ObjectRef,
    ) -> Result<Vec<TagInfo>, VsphereError> {
        let mo = from_ref(target)?;
        let tags = self.client(server).await?.list_attached_tags(&mo).await.map_err(map_error)?;
        Ok(tags.into_iter().map(tag).collect())
    }

    async fn user_privileges(
        &self,
        _: &CallScope,
        server: &str,
        targets: &[ObjectRef],
    ) -> Result<PrivilegeReport, VsphereError> {
        let morefs = targets.iter().map(|t| from_ref(t).map(|mo| mo.moref)).collect::<Result<Vec<_>, _>>()?;
        let report = self.client(server).await?.user_privileges(&morefs).await.map_err(map_error)?;
        Ok(PrivilegeReport {
            defined: report.defined,
            entities: targets
                .iter()
                .zip(report.entities)
                .map(|(t, (_, privileges))| EntityPrivileges { moref: t.moref.clone(), privileges })
                .collect(),
        })
    }

    async fn find_category(
        &self,
        _: &CallScope,
        server: &str,
        name: &str,
    ) -> Result<Option<CategoryInfo>, VsphereError> {
        let found = self.client(server).await?.category(name).await.map_err(map_error)?;
        Ok(found.map(|c| CategoryInfo {
            id: c.id,
            name: c.spec.name,
            description: c.spec.description,
            cardinality: cardinality(c.spec.cardinality),
            associable_types: c.spec.associable_types,
        }))
    }

    async fn list_tags(&self, _: &CallScope, server: &str, category_id: &str) -> Result<Vec<TagInfo>, VsphereError> {
        let tags = self.client(server).await?.tags_of_category(category_id).await.map_err(map_error)?;
        Ok(tags.into_iter().map(tag).collect())
    }
}

/// The VM-folder levels of `path` below `/<dc>/vm`, shallowest first:
/// `/dc/vm/a/b` → [`/dc/vm/a`, `/dc/vm/a/b`].
pub fn folder_levels(path: &str) -> Vec<String> {
    let trimmed = path.trim_end_matches('/');
    let parts: Vec<&str> = trimmed.split('/').collect();
    // ["", dc, "vm", a, b...]
    if parts.len() < 4 || parts[2] != "vm" {
        return Vec::new();
    }
    (4..=parts.len()).map(|n| parts[..n].join("/")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_levels_start_below_the_vm_root() {
        assert_eq!(folder_levels("/dc/vm/a/b/"), vec!["/dc/vm/a".to_string(), "/dc/vm/a/b".to_string()]);
        assert!(folder_levels("/dc/vm").is_empty());
        assert!(folder_levels("/dc/host/x").is_empty());
    }

    #[test]
    fn object_refs_round_trip_with_their_type() {
        let mo = vs::ManagedObject {
            kind: vs::ObjectKind::Network,
            moref: vs::MoRef { type_name: "DistributedVirtualPortgroup".into(), value: "dvportgroup-9".into() },
            path: "/dc/network/pg".into(),
        };
        let r = to_ref(&mo);
        assert_eq!(r.moref, "DistributedVirtualPortgroup:dvportgroup-9");
        assert_eq!(from_ref(&r).unwrap(), mo);
        assert!(from_ref(&ObjectRef { moref: "bare".into(), ..r }).is_err());
    }
}
