//! `deploy/` in the test environment: read the manifests, apply them (as an admin would
//! with `kubectl apply`), read the plugin configuration out of its ConfigMap, and run the
//! operator as the ServiceAccount with a client that records every request it makes, so a
//! test can see which permissions were used and whether any was refused.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use serde_json::Value;
use vsm_host::leader::LeaderConfig;
use vsm_host::operator::OperatorConfig;
use vsm_host::runtime::config::PluginConfig;

use crate::TestEnv;

/// The ServiceAccount's namespace, name and the plugin ConfigMap, as in `deploy/`.
pub const NAMESPACE: &str = "vsphere-migration";
pub const SERVICE_ACCOUNT: &str = "operator";
pub const PLUGIN_CONFIGMAP: &str = "vsphere-migration-plugins";
pub const PLUGIN_CONFIG_KEY: &str = "plugins.yaml";
/// Field manager of the manifests applied by tests.
const MANAGER: &str = "vsm-deploy-test";

/// The repository's `deploy/` directory.
pub fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// The documents of a (multi-document) YAML file, as JSON values; empty documents skipped.
pub fn load(path: &Path) -> Result<Vec<Value>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut docs = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let value: Value =
            serde::Deserialize::deserialize(doc).with_context(|| format!("parsing {}", path.display()))?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(docs)
}

/// Every document of `deploy/<file>`.
pub fn manifest(file: &str) -> Result<Vec<Value>> {
    load(&deploy_dir().join(file))
}

/// Server-side apply each document (cluster-scoped or namespaced, any kind the cluster
/// serves), in order.
pub async fn apply(client: &kube::Client, docs: &[Value]) -> Result<()> {
    for doc in docs {
        let api_version = doc["apiVersion"].as_str().context("a manifest without apiVersion")?;
        let kind = doc["kind"].as_str().context("a manifest without kind")?;
        let name = doc["metadata"]["name"].as_str().context("a manifest without metadata.name")?;
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let (ar, caps) = kube::discovery::pinned_kind(client, &gvk).await.with_context(|| format!("{gvk:?}"))?;
        let api: Api<DynamicObject> = match (caps.scope, doc["metadata"]["namespace"].as_str()) {
            (kube::discovery::Scope::Namespaced, Some(ns)) => Api::namespaced_with(client.clone(), ns, &ar),
            (kube::discovery::Scope::Namespaced, None) => bail!("{kind} {name} needs a namespace"),
            (kube::discovery::Scope::Cluster, _) => Api::all_with(client.clone(), &ar),
        };
        api.patch(name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(doc))
            .await
            .with_context(|| format!("applying {kind} {name}"))?;
    }
    Ok(())
}

/// Apply the ServiceAccount, RBAC and plugin ConfigMap of `deploy/` (not the Deployment:
/// nothing runs pods here).
pub async fn install(env: &TestEnv) -> Result<()> {
    let client = env.client();
    for file in ["namespace.yaml", "rbac.yaml", "plugin-config.yaml"] {
        apply(&client, &manifest(file)?).await?;
    }
    Ok(())
}

/// The plugin configuration held by `deploy/plugin-config.yaml`.
pub fn plugin_config() -> Result<PluginConfig> {
    let docs = manifest("plugin-config.yaml")?;
    let cm = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == PLUGIN_CONFIGMAP)
        .context("no plugin ConfigMap in deploy/plugin-config.yaml")?;
    let text = cm["data"][PLUGIN_CONFIG_KEY].as_str().context("the ConfigMap has no plugins.yaml")?;
    Ok(PluginConfig::from_yaml(text)?)
}

/// The operator container of `deploy/deployment.yaml`.
pub fn operator_container() -> Result<Value> {
    let docs = manifest("deployment.yaml")?;
    let deployment = docs.iter().find(|d| d["kind"] == "Deployment").context("no Deployment in deploy/")?;
    deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "operator"))
        .cloned()
        .context("the Deployment has no container named operator")
}

/// The value of `--flag=value` (or `--flag value`) in the operator container's args.
pub fn operator_arg(flag: &str) -> Result<Option<String>> {
    let container = operator_container()?;
    let args: Vec<&str> = container["args"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    for (i, a) in args.iter().enumerate() {
        if let Some(v) = a.strip_prefix(&format!("{flag}=")) {
            return Ok(Some(v.to_string()));
        }
        if *a == flag {
            return Ok(Some(
                args.get(i + 1).filter(|n| !n.starts_with("--")).map(|s| s.to_string()).unwrap_or_default(),
            ));
        }
    }
    Ok(None)
}

/// The operator configured as `deploy/deployment.yaml` runs it (leader election on the same
/// Lease, migrations watched in its namespace, the plugin ConfigMap), with the components
/// from `plugin_dir` and no fixed port.
pub fn operator_config(plugin_dir: &Path, identity: &str) -> Result<OperatorConfig> {
    let leader = operator_arg("--leader-elect")?.is_some();
    let lease_name = operator_arg("--lease-name")?.unwrap_or_else(|| "vsphere-migration-operator".into());
    Ok(OperatorConfig {
        plugin_dir: plugin_dir.to_path_buf(),
        plugin_config: plugin_config()?,
        cache_dir: Some(crate::tools::cache_dir()?.with_file_name("wasm-cache")),
        namespace: Some(NAMESPACE.into()),
        leader: leader.then(|| LeaderConfig {
            namespace: NAMESPACE.into(),
            name: lease_name,
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }),
        listen: Some("127.0.0.1:0".parse()?),
        identity: identity.into(),
        watch_plugins: true,
        vsphere: Default::default(),
    })
}

/// One API request and the status code it got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub status: u16,
}

/// What an RBAC rule would have to allow for a request.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Access {
    /// None: cluster-scoped, or all namespaces.
    pub namespace: Option<String>,
    pub group: String,
    /// With the subresource, e.g. `vspheremigrations/status`.
    pub resource: String,
    pub verb: String,
    /// The object's name (None for list, watch and create).
    pub name: Option<String>,
}

impl Recorded {
    /// The RBAC attributes of the request; None for non-resource URLs (discovery).
    pub fn access(&self) -> Option<Access> {
        let parts: Vec<&str> = self.path.trim_matches('/').split('/').collect();
        let (group, rest) = match parts.as_slice() {
            ["api", _version, rest @ ..] => (String::new(), rest),
            ["apis", group, _version, rest @ ..] => (group.to_string(), rest),
            _ => return None,
        };
        let (namespace, rest) = match rest {
            // `namespaces/<ns>/<resource>...`, but not the namespace object itself.
            ["namespaces", ns, resource, more @ ..] if !matches!(*resource, "status" | "finalize") => {
                (Some(ns.to_string()), [&[*resource][..], more].concat())
            }
            other => (None, other.to_vec()),
        };
        let (resource, name, sub) = match rest.as_slice() {
            [resource] => (resource.to_string(), None, None),
            [resource, name] => (resource.to_string(), Some(name.to_string()), None),
            [resource, name, sub] => (resource.to_string(), Some(name.to_string()), Some(sub.to_string())),
            _ => return None,
        };
        let watch = self.query.split('&').any(|kv| kv == "watch=true" || kv == "watch=1");
        let verb = match (self.method.as_str(), &name) {
            ("GET", _) if watch => "watch",
            ("GET", None) => "list",
            ("GET", Some(_)) => "get",
            ("POST", _) => "create",
            ("PUT", _) => "update",
            ("PATCH", _) => "patch",
            ("DELETE", None) => "deletecollection",
            ("DELETE", Some(_)) => "delete",
            _ => return None,
        };
        let resource = match sub {
            Some(sub) => format!("{resource}/{sub}"),
            None => resource,
        };
        // A create names its object in the body, not the URL.
        let name = if verb == "create" { None } else { name };
        Some(Access { namespace, group, resource, verb: verb.into(), name })
    }
}

/// The requests a [`recording_client`] made, in order.
#[derive(Clone, Default)]
pub struct RequestLog(Arc<Mutex<Vec<Recorded>>>);

impl RequestLog {
    pub fn all(&self) -> Vec<Recorded> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// A tower service that records each request's method, path and response status.
#[derive(Clone)]
pub struct Recording<S> {
    inner: S,
    log: RequestLog,
}

impl<S, B> tower::Service<http::Request<kube::client::Body>> for Recording<S>
where
    S: tower::Service<http::Request<kube::client::Body>, Response = http::Response<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<kube::client::Body>) -> Self::Future {
        let method = req.method().to_string();
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or_default().to_string();
        let log = self.log.clone();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let result = fut.await;
            // A transport error reached no authorizer: recorded as status 0.
            let status = result.as_ref().map(|r| r.status().as_u16()).unwrap_or(0);
            log.0.lock().unwrap_or_else(|e| e.into_inner()).push(Recorded { method, path, query, status });
            result
        })
    }
}

struct RecordingLayer(RequestLog);

impl<S> tower::Layer<S> for RecordingLayer {
    type Service = Recording<S>;
    fn layer(&self, inner: S) -> Recording<S> {
        Recording { inner, log: self.0.clone() }
    }
}

/// A client for `config` that records every request and its response status.
pub fn recording_client(config: kube::Config) -> Result<(kube::Client, RequestLog)> {
    let log = RequestLog::default();
    let client = kube::client::ClientBuilder::try_from(config)?.with_layer(&RecordingLayer(log.clone())).build();
    Ok((client, log))
}

/// A recording client with the ServiceAccount's own credentials (the environment's
/// operator token: `system:serviceaccount:vsphere-migration:operator`, not an admin).
pub async fn operator_client(env: &TestEnv) -> Result<(kube::Client, RequestLog)> {
    let config = crate::apiserver::config_from_kubeconfig(env.operator_kubeconfig_path()).await?;
    recording_client(config)
}

/// Every permission the RBAC of `deploy/rbac.yaml` grants the ServiceAccount, one tuple per
/// (scope, group, resource, verb, name); ClusterRole rules are cluster-wide (namespace None).
/// Fails if a role is not bound to the ServiceAccount or a binding names another role.
pub fn granted() -> Result<std::collections::BTreeSet<Access>> {
    let docs = manifest("rbac.yaml")?;
    let mut out = std::collections::BTreeSet::new();
    let subject_ok = |binding: &Value| {
        binding["subjects"].as_array().is_some_and(|subjects| {
            subjects.len() == 1
                && subjects[0]["kind"] == "ServiceAccount"
                && subjects[0]["name"] == SERVICE_ACCOUNT
                && subjects[0]["namespace"] == NAMESPACE
        })
    };
    for doc in &docs {
        let kind = doc["kind"].as_str().unwrap_or_default();
        let name = doc["metadata"]["name"].as_str().unwrap_or_default();
        let namespace = doc["metadata"]["namespace"].as_str().map(str::to_string);
        match kind {
            "ClusterRole" | "Role" => {
                let binding_kind = if kind == "Role" { "RoleBinding" } else { "ClusterRoleBinding" };
                let bound = docs.iter().any(|b| {
                    b["kind"] == binding_kind
                        && b["metadata"]["namespace"].as_str().map(str::to_string) == namespace
                        && b["roleRef"]["kind"] == kind
                        && b["roleRef"]["name"] == name
                        && subject_ok(b)
                });
                if !bound {
                    bail!("{kind} {name} in {namespace:?} is not bound to the operator's ServiceAccount");
                }
                for rule in doc["rules"].as_array().into_iter().flatten() {
                    let strings = |key: &str| -> Vec<String> {
                        rule[key]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(Value::as_str)
                            .map(str::to_string)
                            .collect()
                    };
                    if rule.get("nonResourceURLs").is_some() {
                        bail!("{kind} {name} grants nonResourceURLs; discovery needs none");
                    }
                    let names = strings("resourceNames");
                    let names: Vec<Option<String>> =
                        if names.is_empty() { vec![None] } else { names.into_iter().map(Some).collect() };
                    for group in strings("apiGroups") {
                        for resource in strings("resources") {
                            for verb in strings("verbs") {
                                if [&group, &resource, &verb].iter().any(|s| s.contains('*')) {
                                    bail!("{kind} {name} uses a wildcard: {group}/{resource} {verb}");
                                }
                                for n in &names {
                                    out.insert(Access {
                                        namespace: namespace.clone(),
                                        group: group.clone(),
                                        resource: resource.clone(),
                                        verb: verb.clone(),
                                        name: n.clone(),
                                    });
                                }
                            }
                        }
                    }
                }
            }
            "ClusterRoleBinding" | "RoleBinding" => {
                if !subject_ok(doc) {
                    bail!("{kind} {name} binds something other than the operator's ServiceAccount");
                }
            }
            other => bail!("unexpected {other} in deploy/rbac.yaml"),
        }
    }
    Ok(out)
}

/// Whether the granted tuple `g` allows the request `used`.
pub fn covers(g: &Access, used: &Access) -> bool {
    g.group == used.group
        && g.resource == used.resource
        && g.verb == used.verb
        && (g.namespace.is_none() || g.namespace == used.namespace)
        && (g.name.is_none() || g.name == used.name)
}

/// Objects the shipped code only ever addresses by one well-known name: rules for verbs
/// that carry a name (get, update, patch, delete) name it (`resourceNames`).
pub const WELL_KNOWN: &[(Option<&str>, &str, &str, &str)] = &[
    (None, "config.openshift.io", "infrastructures", "cluster"),
    (None, "config.openshift.io", "clusterversions", "version"),
    (None, "config.openshift.io", "featuregates", "cluster"),
    (None, "config.openshift.io", "proxies", "cluster"),
    (None, "operator.openshift.io", "cloudcredentials", "cluster"),
    (Some("openshift-cluster-storage-operator"), "", "secrets", "vsphere-cloud-credentials"),
    (Some("openshift-machine-api"), "", "secrets", "vsphere-cloud-credentials"),
    (Some("openshift-cloud-controller-manager"), "", "secrets", "vsphere-cloud-credentials"),
    (Some("openshift-cluster-csi-drivers"), "", "secrets", "vmware-vsphere-cloud-credentials"),
    (Some("kube-system"), "", "secrets", "vsphere-creds"),
    (Some("openshift-machine-api"), "", "configmaps", "mao-trusted-ca"),
    (Some("openshift-cloud-controller-manager"), "", "configmaps", "ccm-trusted-ca"),
    (Some("openshift-config-managed"), "", "configmaps", "kube-cloud-config"),
    (Some("openshift-machine-api"), "machine.openshift.io", "controlplanemachinesets", "cluster"),
    (Some("openshift-cluster-version"), "apps", "deployments", "cluster-version-operator"),
    (Some(NAMESPACE), "coordination.k8s.io", "leases", "vsphere-migration-operator"),
];

fn access(namespace: Option<&str>, group: &str, resource: &str, verb: &str) -> Access {
    let name = if matches!(verb, "get" | "update" | "patch" | "delete") {
        WELL_KNOWN
            .iter()
            .find(|(ns, g, r, _)| *ns == namespace && *g == group && *r == resource)
            .map(|(_, _, _, n)| n.to_string())
    } else {
        None
    };
    Access {
        namespace: namespace.map(str::to_string),
        group: group.into(),
        resource: resource.into(),
        verb: verb.into(),
        name,
    }
}

/// Why the host itself needs a permission (beyond what it does for phases).
pub fn host_needs() -> Vec<(Access, &'static str)> {
    let ns = Some(NAMESPACE);
    let mig = "migration.openshift.io";
    let out = vec![
        (access(None, mig, "vspheremigrations", "list"), "host: one active migration per cluster (lists all)"),
        (access(ns, mig, "vspheremigrations", "watch"), "host: the controller watches its namespace"),
        (access(ns, mig, "vspheremigrations", "get"), "host: status write after a conflict"),
        (access(ns, mig, "vspheremigrations", "patch"), "host: finalizer"),
        (access(ns, mig, "vspheremigrations/status", "patch"), "host: status (server-side apply)"),
        (
            access(ns, mig, "vspheremigrations/finalizers", "update"),
            "host: backups and state are owned with blockOwnerDeletion (OwnerReferencesPermissionEnforcement)",
        ),
        (access(ns, "", "secrets", "create"), "host: backup journal"),
        (access(ns, "", "secrets", "get"), "host: backup journal, target credentials, CA Secrets"),
        (access(ns, "", "secrets", "list"), "host: backup journal (restore, clean-up)"),
        (access(ns, "", "secrets", "patch"), "host: backup journal (ids, restored marks)"),
        (access(ns, "", "secrets", "delete"), "host: backup journal (clean-up with the migration)"),
        (access(ns, "", "configmaps", "create"), "host: state store"),
        (access(ns, "", "configmaps", "get"), "host: state store"),
        (access(ns, "", "configmaps", "patch"), "host: state store"),
        (access(ns, "", "configmaps", "delete"), "host: state store (clean-up with the migration)"),
        (access(ns, "coordination.k8s.io", "leases", "create"), "host: leader election"),
        (access(ns, "coordination.k8s.io", "leases", "get"), "host: leader election"),
        (access(ns, "coordination.k8s.io", "leases", "update"), "host: leader election"),
        (access(ns, "events.k8s.io", "events", "create"), "host: Events"),
        (access(ns, "events.k8s.io", "events", "patch"), "host: Events (a repeated Event is a series)"),
        (access(Some("kube-system"), "", "secrets", "get"), "host: source vCenter credentials"),
        (access(None, "config.openshift.io", "infrastructures", "get"), "host: source vCenters"),
    ];
    out
}

/// The permissions each loaded component needs, derived from what it may do (declared and
/// granted: `LoadedPlugin::caps`): the controller's watches of what they read; the verbs themselves; `get` on whatever it mutates (the
/// host reads the before-image into the journal first); and, for a phase with a rollback,
/// what restoring a before-image takes (a created object is deleted, an updated or patched
/// one updated, a deleted one created again or, if something recreated it, updated).
pub fn phase_needs(plugins: &[Arc<vsm_host::runtime::LoadedPlugin>]) -> Vec<(Access, String)> {
    let mut out = Vec::new();
    // The controller watches what the phases read (controller::watches): waits end on events.
    for w in vsm_host::controller::watches::watches(plugins.iter().map(|p| p.caps.as_ref())) {
        for verb in ["list", "watch"] {
            let at = access(w.namespace.as_deref(), &w.group, &w.resource, verb);
            out.push((at, format!("host: controller watch of what the phases read ({}/{})", w.group, w.resource)));
        }
    }
    for p in plugins {
        for rule in &p.caps.granted.kube {
            for verb in &rule.verbs {
                if !p.caps.declared.allows_kube(&rule.group, &rule.resource, verb, rule.namespace.as_deref()) {
                    continue;
                }
                let at = |v: &str| access(rule.namespace.as_deref(), &rule.group, &rule.resource, v);
                if verb == "validate" {
                    // A replace sent with dryRun=All: RBAC asks for `update`; nothing changes.
                    out.push((at("update"), format!("phase {}: validate (a dry-run update)", p.component)));
                    continue;
                }
                out.push((at(verb), format!("phase {}: {verb}", p.component)));
                if verb == "get" || verb == "list" || verb == "watch" {
                    continue;
                }
                out.push((at("get"), format!("journal: {} {verb} needs the before-image", p.component)));
                if p.info.has_rollback {
                    let restore: &[&str] = match verb.as_str() {
                        "create" => &["delete"],
                        "update" | "patch" => &["update"],
                        "delete" => &["create", "update"],
                        _ => &[],
                    };
                    for r in restore {
                        out.push((at(r), format!("restore: {} rollback after {verb}", p.component)));
                    }
                }
            }
        }
    }
    out
}

/// Everything the operator needs, with the reasons: [`host_needs`] and [`phase_needs`] of the
/// components in `plugin_dir` as configured by `deploy/plugin-config.yaml`.
pub async fn required(
    plugin_dir: &Path,
) -> Result<std::collections::BTreeMap<Access, std::collections::BTreeSet<String>>> {
    let runtime = vsm_host::runtime::Runtime::new(vsm_host::runtime::RuntimeConfig {
        cache_dir: Some(crate::tools::cache_dir()?.with_file_name("wasm-cache")),
        ..Default::default()
    })?;
    let registry = vsm_host::runtime::Registry::open(runtime, plugin_dir, plugin_config()?).await?;
    let rejected: Vec<String> =
        registry.status().into_iter().filter_map(|s| s.error.map(|e| format!("{}: {e}", s.component))).collect();
    if !rejected.is_empty() {
        bail!("components rejected: {}", rejected.join("; "));
    }
    let mut out: std::collections::BTreeMap<Access, std::collections::BTreeSet<String>> = Default::default();
    for (a, why) in host_needs() {
        out.entry(a).or_default().insert(why.to_string());
    }
    for (a, why) in phase_needs(&registry.loaded()) {
        out.entry(a).or_default().insert(why);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(method: &str, path: &str, query: &str) -> Option<Access> {
        Recorded { method: method.into(), path: path.into(), query: query.into(), status: 200 }.access()
    }

    fn access(ns: Option<&str>, group: &str, resource: &str, verb: &str, name: Option<&str>) -> Option<Access> {
        Some(Access {
            namespace: ns.map(Into::into),
            group: group.into(),
            resource: resource.into(),
            verb: verb.into(),
            name: name.map(Into::into),
        })
    }

    #[test]
    fn request_paths_map_to_rbac_attributes() {
        assert_eq!(rec("GET", "/api/v1/nodes", ""), access(None, "", "nodes", "list", None));
        assert_eq!(
            rec("GET", "/api/v1/namespaces/kube-system/secrets/vsphere-creds", ""),
            access(Some("kube-system"), "", "secrets", "get", Some("vsphere-creds"))
        );
        assert_eq!(
            rec(
                "GET",
                "/apis/machine.openshift.io/v1beta1/namespaces/openshift-machine-api/machines",
                "watch=true&x=1"
            ),
            access(Some("openshift-machine-api"), "machine.openshift.io", "machines", "watch", None)
        );
        assert_eq!(
            rec("PATCH", "/apis/migration.openshift.io/v1alpha1/namespaces/vm/vspheremigrations/m/status", ""),
            access(Some("vm"), "migration.openshift.io", "vspheremigrations/status", "patch", Some("m"))
        );
        assert_eq!(
            rec("POST", "/apis/events.k8s.io/v1/namespaces/vm/events", ""),
            access(Some("vm"), "events.k8s.io", "events", "create", None)
        );
        assert_eq!(
            rec("PUT", "/apis/config.openshift.io/v1/infrastructures/cluster", ""),
            access(None, "config.openshift.io", "infrastructures", "update", Some("cluster"))
        );
        assert_eq!(rec("GET", "/api/v1/namespaces/vm", ""), access(None, "", "namespaces", "get", Some("vm")));
        assert_eq!(rec("GET", "/apis/apps/v1", ""), None, "discovery is not a resource request");
        assert_eq!(rec("GET", "/apis", ""), None);
    }
}
