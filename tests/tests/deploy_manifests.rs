//! `deploy/` parses, and the Deployment runs the operator as documented: two replicas with
//! leader election, probes on the endpoint's real port, requests and limits, non-root with
//! a read-only root filesystem, seccomp RuntimeDefault, no privilege escalation, no
//! capabilities; the plugin ConfigMap, the component cache and the plugin directory where
//! the arguments and the Containerfile expect them.

use anyhow::{Context, Result};
use serde_json::Value;
use vsm_testenv::deploy::{self, PLUGIN_CONFIG_KEY, PLUGIN_CONFIGMAP};

fn deployment() -> Result<Value> {
    deploy::manifest("deployment.yaml")?.into_iter().find(|d| d["kind"] == "Deployment").context("no Deployment")
}

fn mount_of<'a>(container: &'a Value, pod: &'a Value, mount_path: &str) -> Option<&'a Value> {
    let mount = container["volumeMounts"].as_array()?.iter().find(|m| m["mountPath"] == mount_path)?;
    pod["volumes"].as_array()?.iter().find(|v| v["name"] == mount["name"])
}

#[test]
fn every_manifest_parses_and_names_its_namespace() -> Result<()> {
    let mut kinds = Vec::new();
    for entry in std::fs::read_dir(deploy::deploy_dir())? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        for doc in deploy::load(&path)? {
            let kind = doc["kind"].as_str().context("kind")?.to_string();
            assert!(doc["apiVersion"].is_string() && doc["metadata"]["name"].is_string(), "{}", path.display());
            let cluster_scoped = ["Namespace", "ClusterRole", "ClusterRoleBinding"].contains(&kind.as_str());
            assert_eq!(
                doc["metadata"]["namespace"].is_string(),
                !cluster_scoped,
                "{kind} {} in {}",
                doc["metadata"]["name"],
                path.display()
            );
            kinds.push(kind);
        }
    }
    kinds.sort();
    kinds.dedup();
    for k in ["ClusterRole", "ConfigMap", "Deployment", "Namespace", "Role", "RoleBinding", "Service", "ServiceAccount"]
    {
        assert!(kinds.iter().any(|x| x == k), "no {k} in deploy/: {kinds:?}");
    }
    Ok(())
}

#[test]
fn the_deployment_runs_two_hardened_replicas_with_leader_election() -> Result<()> {
    let d = deployment()?;
    assert_eq!(d["spec"]["replicas"], 2);
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], deploy::SERVICE_ACCOUNT);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    assert!(pod["securityContext"]["runAsUser"].as_u64().is_some_and(|u| u > 0));

    let c = deploy::operator_container()?;
    let sc = &c["securityContext"];
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert!(sc["capabilities"]["add"].is_null());
    assert!(sc["privileged"].is_null() || sc["privileged"] == false);
    for kind in ["requests", "limits"] {
        for res in ["cpu", "memory"] {
            assert!(c["resources"][kind][res].is_string(), "no {kind}.{res}");
        }
    }

    assert_eq!(c["args"][0], "run");
    assert_eq!(deploy::operator_arg("--leader-elect")?.as_deref(), Some(""));
    let env: Vec<&str> = c["env"].as_array().into_iter().flatten().filter_map(|e| e["name"].as_str()).collect();
    for var in ["POD_NAME", "POD_NAMESPACE", "VSM_WATCH_NAMESPACE"] {
        assert!(env.contains(&var), "{var} is not set: the lease identity, its namespace, the watched namespace");
    }
    let lease = deploy::operator_arg("--lease-name")?.context("--lease-name")?;
    assert!(
        deploy::WELL_KNOWN.iter().any(|(_, _, r, n)| *r == "leases" && *n == lease),
        "the RBAC names the lease {lease}"
    );
    Ok(())
}

#[test]
fn probes_hit_the_health_endpoints_on_the_port_the_operator_listens_on() -> Result<()> {
    let c = deploy::operator_container()?;
    let listen = deploy::operator_arg("--listen")?.context("--listen")?;
    let port: u64 = listen.rsplit(':').next().unwrap().parse()?;
    let ports = c["ports"].as_array().context("ports")?;
    let named = |p: &Value| -> Option<u64> {
        match p {
            Value::Number(n) => n.as_u64(),
            Value::String(name) => ports.iter().find(|x| x["name"] == *name)?["containerPort"].as_u64(),
            _ => None,
        }
    };
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        assert_eq!(named(&get["port"]), Some(port), "{probe} port");
    }
    let service =
        deploy::manifest("deployment.yaml")?.into_iter().find(|d| d["kind"] == "Service").context("Service")?;
    let pod_labels = &deployment()?["spec"]["template"]["metadata"]["labels"];
    for (k, v) in service["spec"]["selector"].as_object().context("selector")? {
        assert_eq!(&pod_labels[k], v, "the metrics Service selects the operator pods");
    }
    Ok(())
}

#[test]
fn config_cache_and_plugins_are_where_the_arguments_and_the_image_put_them() -> Result<()> {
    let d = deployment()?;
    let pod = &d["spec"]["template"]["spec"];
    let c = deploy::operator_container()?;

    let config_path = deploy::operator_arg("--plugin-config")?.context("--plugin-config")?;
    let (dir, file) = config_path.rsplit_once('/').context("an absolute path")?;
    assert_eq!(file, PLUGIN_CONFIG_KEY);
    let volume = mount_of(&c, pod, dir).context("the plugin config is mounted")?;
    assert_eq!(volume["configMap"]["name"], PLUGIN_CONFIGMAP);
    deploy::plugin_config()?;

    let cache = deploy::operator_arg("--cache-dir")?.context("--cache-dir")?;
    let volume = mount_of(&c, pod, &cache).context("the cache dir is a volume (the root filesystem is read-only)")?;
    assert!(volume["emptyDir"].is_object());

    let plugins = deploy::operator_arg("--plugin-dir")?.context("--plugin-dir")?;
    let containerfile = std::fs::read_to_string(deploy::deploy_dir().join("Containerfile"))?;
    assert!(
        containerfile.contains(&format!("COPY --from=build /out/plugins/ {plugins}/")),
        "the image ships the components in {plugins}"
    );
    assert!(containerfile.contains("cargo xtask plugins"), "the image builds the components");
    let user = containerfile.lines().rev().find_map(|l| l.strip_prefix("USER ")).context("USER")?;
    assert!(!user.starts_with('0') && !user.starts_with("root"), "the image runs as non-root: {user}");
    Ok(())
}
