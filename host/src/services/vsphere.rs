//! vSphere calls on behalf of phases: which credentials and TLS settings a server uses,
//! the calls on the shared session pool, conversion to the contract's types, and undoing
//! created objects.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use vsm_vsphere as vs;

use crate::api::{MigrationSpec, SourceVCenter};
use crate::runtime::bindings::{
    AboutInfo, Cardinality, CategorySpec, Ensured, ObjectKind, ObjectRef, TagInfo, VmInfo, VsphereError,
};
use crate::services::journal::ObjectRefJson;

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
        cardinality: match t.cardinality {
            vs::Cardinality::Single => Cardinality::Single,
            vs::Cardinality::Multiple => Cardinality::Multiple,
        },
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
