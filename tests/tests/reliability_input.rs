//! Bad input: a table of invalid VSphereMigration specs. What the schema and its CEL rules
//! can check is refused by the API server with the field named; transitions the rules
//! forbid (cancelling a rollback, changing failure domains or the mode after the start,
//! going back to Pending) are refused on update; what only the cluster can tell (the
//! credentials Secret, CA Secrets, vCenters that are all targets) is refused by the
//! operator (the release binary) with an InvalidSpec condition naming the field, and the
//! migration never starts.

mod reliability_support;

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use vsm_api::VSphereMigration;
use vsm_testenv::harness::{NAMESPACE, TARGET_CREDS, VCENTER_CA};

use reliability_support::{Lab, LabOptions, OperatorOptions, condition, report};

type Edit = fn(&mut Value);

/// (case, edit of a valid spec, text the API server's refusal must contain)
fn schema_cases() -> Vec<(&'static str, Edit, &'static str)> {
    vec![
        (
            "missing credentials Secret",
            |s| drop(s.as_object_mut().unwrap().remove("targetVCenterCredentialsSecret")),
            "spec.targetVCenterCredentialsSecret: Required value",
        ),
        (
            "missing failureDomains",
            |s| drop(s.as_object_mut().unwrap().remove("failureDomains")),
            "spec.failureDomains: Required value",
        ),
        ("empty failureDomains", |s| s["failureDomains"] = json!([]), "spec.failureDomains: Invalid value"),
        (
            "missing machineSetConfig",
            |s| drop(s.as_object_mut().unwrap().remove("machineSetConfig")),
            "spec.machineSetConfig: Required value",
        ),
        (
            "missing topology datastore",
            |s| drop(s["failureDomains"][0]["topology"].as_object_mut().unwrap().remove("datastore")),
            "spec.failureDomains[0].topology.datastore: Required value",
        ),
        (
            "compute cluster not under /<dc>/host",
            |s| s["failureDomains"][0]["topology"]["computeCluster"] = json!("/dst-dc/dst-cluster"),
            "spec.failureDomains[0].topology.computeCluster",
        ),
        (
            "datastore not under /<dc>/datastore",
            |s| s["failureDomains"][0]["topology"]["datastore"] = json!("dst-ds"),
            "spec.failureDomains[0].topology.datastore",
        ),
        (
            "folder not under /<dc>/vm",
            |s| s["failureDomains"][0]["topology"]["folder"] = json!("/dst-dc/folders/x"),
            "spec.failureDomains[0].topology.folder",
        ),
        (
            "template not under /<dc>/vm",
            |s| s["failureDomains"][0]["topology"]["template"] = json!("rhcos"),
            "spec.failureDomains[0].topology.template",
        ),
        (
            "resource pool outside its cluster",
            |s| s["failureDomains"][0]["topology"]["resourcePool"] = json!("/dst-dc/pools/p"),
            "spec.failureDomains[0].topology.resourcePool",
        ),
        (
            "no networks",
            |s| s["failureDomains"][0]["topology"]["networks"] = json!([]),
            "spec.failureDomains[0].topology.networks",
        ),
        (
            "unknown phase in approvals",
            |s| s["approvals"] = json!(["Preflight", "MakeCoffee"]),
            "spec.approvals[1]: Unsupported value: \"MakeCoffee\"",
        ),
        (
            "duplicate failure domains",
            |s| {
                let fd = s["failureDomains"][0].clone();
                s["failureDomains"].as_array_mut().unwrap().push(fd);
            },
            "spec.failureDomains[1]: Duplicate value",
        ),
        (
            "duplicate vCenter connections",
            |s| {
                let c = s["vcenters"][1].clone();
                s["vcenters"].as_array_mut().unwrap().push(c);
            },
            "spec.vcenters[2]: Duplicate value",
        ),
        (
            "worker failure domain not listed",
            |s| s["machineSetConfig"]["failureDomain"] = json!("nowhere"),
            "spec.machineSetConfig.failureDomain must name one of spec.failureDomains",
        ),
        (
            "control-plane failure domain not listed",
            |s| s["controlPlaneMachineSetConfig"]["failureDomain"] = json!("nowhere"),
            "spec.controlPlaneMachineSetConfig.failureDomain must name one of spec.failureDomains",
        ),
        (
            "worker failure domain without a template",
            |s| drop(s["failureDomains"][0]["topology"].as_object_mut().unwrap().remove("template")),
            "needs topology.template",
        ),
        (
            "bad thumbprint",
            |s| s["vcenters"][1] = json!({"server": s["vcenters"][1]["server"], "thumbprint": "AB:CD:not-hex"}),
            "spec.vcenters[1].thumbprint",
        ),
        (
            "insecure with a CA",
            |s| s["vcenters"][1]["insecure"] = json!(true),
            "insecure cannot be combined with caSecret or thumbprint",
        ),
        (
            "insecure with a thumbprint",
            |s| {
                s["vcenters"][1] = json!({"server": s["vcenters"][1]["server"], "insecure": true, "thumbprint": "AA:".repeat(31) + "AA"})
            },
            "insecure cannot be combined with caSecret or thumbprint",
        ),
        ("port out of range", |s| s["vcenters"][1]["port"] = json!(70000), "spec.vcenters[1].port"),
        (
            "too many replicas for a replacement",
            |s| s["machineSetConfig"]["overrides"] = json!([{"machineSet": "w", "replicas": 5000}]),
            "spec.machineSetConfig.overrides[0].replicas: Invalid value: 5000",
        ),
        (
            "a source failure domain mapped to a target domain that does not exist",
            |s| s["machineSetConfig"]["failureDomainMap"] = json!([{"source": "src-a", "target": "nowhere"}]),
            "every spec.machineSetConfig.failureDomainMap[].target must name one of spec.failureDomains",
        ),
        (
            "a MachineSet sent to a failure domain that does not exist",
            |s| s["machineSetConfig"]["overrides"] = json!([{"machineSet": "w", "failureDomain": "nowhere"}]),
            "every spec.machineSetConfig.overrides[].failureDomain must name one of spec.failureDomains",
        ),
        (
            "a MachineSet overridden twice",
            |s| s["machineSetConfig"]["overrides"] = json!([{"machineSet": "w", "replicas": 1}, {"machineSet": "w", "replicas": 2}]),
            "spec.machineSetConfig.overrides[1]: Duplicate value",
        ),
        (
            "control-plane failure domains naming one that does not exist",
            |s| s["controlPlaneMachineSetConfig"] = json!({"failureDomains": ["target-fd", "nowhere"]}),
            "every spec.controlPlaneMachineSetConfig.failureDomains entry must name one of spec.failureDomains",
        ),
        (
            "control plane given one domain and a list",
            |s| s["controlPlaneMachineSetConfig"]["failureDomains"] = json!(["target-fd"]),
            "set exactly one of failureDomain and failureDomains",
        ),
        (
            "control plane over four domains",
            |s| s["controlPlaneMachineSetConfig"] = json!({"failureDomains": ["a", "b", "c", "d"]}),
            "spec.controlPlaneMachineSetConfig.failureDomains: Too many",
        ),
        (
            "unknown phase in plugins",
            |s| s["plugins"] = json!({"Teleport": {"component": "x"}}),
            "spec.plugins keys must be phase names",
        ),
        (
            "plugin sha256 not a digest",
            |s| s["plugins"] = json!({"CreateTags": {"sha256": "abc"}}),
            "spec.plugins.CreateTags.sha256",
        ),
        (
            "unknown phase in phaseDeadlines",
            |s| s["phaseDeadlines"] = json!({"Lunch": "1h"}),
            "spec.phaseDeadlines keys must be phase names",
        ),
        (
            "bad duration in phaseDeadlines",
            |s| s["phaseDeadlines"] = json!({"CreateWorkers": "ten minutes"}),
            "spec.phaseDeadlines.CreateWorkers",
        ),
        ("bad stall timeout", |s| s["health"] = json!({"stallTimeout": "1 hour"}), "spec.health.stallTimeout"),
        ("bad stability window", |s| s["health"] = json!({"stabilityWindow": "-5s"}), "spec.health.stabilityWindow"),
        ("unknown state", |s| s["state"] = json!("Sideways"), "spec.state: Unsupported value: \"Sideways\""),
        ("unknown mode", |s| s["mode"] = json!("Maybe"), "spec.mode: Unsupported value: \"Maybe\""),
        (
            "bad Secret name",
            |s| s["targetVCenterCredentialsSecret"]["name"] = json!("Target_Creds"),
            "spec.targetVCenterCredentialsSecret.name",
        ),
        (
            "host group affinity without a host group",
            |s| s["failureDomains"][0]["zoneAffinity"] = json!({"type": "HostGroup"}),
            "hostGroup is required when type is HostGroup",
        ),
        ("empty region", |s| s["failureDomains"][0]["region"] = json!(""), "spec.failureDomains[0].region"),
    ]
}

fn object(name: &str, spec: &Value) -> Result<VSphereMigration> {
    Ok(serde_json::from_value(raw_object(name, spec))?)
}

/// As sent by a client without our types: a spec missing required fields too.
fn raw_object(name: &str, spec: &Value) -> Value {
    json!({
        "apiVersion": "migration.openshift.io/v1alpha1", "kind": "VSphereMigration",
        "metadata": {"name": name}, "spec": spec
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_specs_are_refused_with_the_field_named() -> Result<()> {
    let lab = Lab::start(LabOptions::new("bad-input")).await?;
    // Only the migrations' namespace is watched: the transition cases live elsewhere.
    let op =
        lab.operator(OperatorOptions { namespace: Some(NAMESPACE.into()), ..OperatorOptions::new("solo") }).await?;
    let base = serde_json::to_value(lab.spec(json!({}))?)?;
    let mut cases = 0;
    let mut failures = Vec::new();

    // 1. The schema and its CEL rules, at the API server.
    let api = lab.migrations();
    let raw =
        lab.env.dynamic("migration.openshift.io", "v1alpha1", "VSphereMigration", "vspheremigrations", Some(NAMESPACE));
    for (i, (case, edit, expected)) in schema_cases().into_iter().enumerate() {
        let mut spec = base.clone();
        edit(&mut spec);
        cases += 1;
        let obj: DynamicObject = serde_json::from_value(raw_object(&format!("bad-{i}"), &spec))?;
        match raw.create(&PostParams::default(), &obj).await {
            Ok(_) => failures.push(format!("{case}: accepted")),
            Err(e) if e.to_string().contains(expected) => {
                report(&lab.dir, format!("schema  | {case:<42} | {}", first_cause(&e.to_string(), expected)))
            }
            Err(e) => failures.push(format!("{case}: refused without {expected:?}: {e}")),
        }
    }

    // 2. Transitions, on update (a namespace the operator does not watch: nothing runs).
    let other: Api<VSphereMigration> = Api::namespaced(lab.env.client(), "default");
    let transitions: Vec<(&str, Value, Value, &str)> = vec![
        (
            "cancelling a rollback",
            json!({"state": "Rollback"}),
            json!({"state": "Running"}),
            "a rollback cannot be cancelled",
        ),
        (
            "changing failureDomains after the start",
            json!({}),
            json!({"failureDomains": [{"name": "target-fd", "region": "r2", "zone": "z2", "server": lab.env.target().host(), "topology": base["failureDomains"][0]["topology"].clone()}]}),
            "spec.failureDomains cannot change once the migration has started",
        ),
        (
            "changing the mode after the start",
            json!({}),
            json!({"mode": "Plan"}),
            "spec.mode cannot change once the migration has started",
        ),
        ("going back to Pending", json!({}), json!({"state": "Pending"}), "spec.state cannot go back to Pending"),
    ];
    for (i, (case, first, second, expected)) in transitions.into_iter().enumerate() {
        cases += 1;
        let name = format!("transition-{i}");
        other.create(&PostParams::default(), &object(&name, &base)?).await?;
        let pp = PatchParams::default();
        if first.as_object().is_some_and(|o| !o.is_empty()) {
            other
                .patch(&name, &pp, &Patch::Merge(json!({"spec": first})))
                .await
                .with_context(|| format!("{case}: first step"))?;
        }
        match other.patch(&name, &pp, &Patch::Merge(json!({"spec": second}))).await {
            Ok(_) => failures.push(format!("{case}: accepted")),
            Err(e) if e.to_string().contains(expected) => {
                report(&lab.dir, format!("update  | {case:<42} | {}", first_cause(&e.to_string(), expected)))
            }
            Err(e) => failures.push(format!("{case}: refused without {expected:?}: {e}")),
        }
    }

    // 3. What only the cluster can tell, by the operator.
    let secrets: Api<Secret> = Api::namespaced(lab.env.client(), NAMESPACE);
    let src = lab.env.source().host();
    let dst = lab.env.target();
    let both = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "all-targets-creds"}, "stringData": {
        format!("{src}.username"): "u", format!("{src}.password"): "p",
        format!("{}.username", dst.host()): "u", format!("{}.password", dst.host()): "p"}});
    secrets.create(&PostParams::default(), &serde_json::from_value(both)?).await?;
    let operator_cases: Vec<(&str, Value, &str)> = vec![
        (
            "credentials Secret missing",
            json!({"targetVCenterCredentialsSecret": {"name": "no-such-secret"}}),
            "spec.targetVCenterCredentialsSecret: Secret vsphere-migration/no-such-secret does not exist",
        ),
        (
            "a target server not in the Secret",
            json!({"failureDomains": [base["failureDomains"][0].clone(), {"name": "far-fd", "region": "far", "zone": "far-a", "server": "10.9.9.9", "topology": base["failureDomains"][0]["topology"].clone()}]}),
            "lacks keys 10.9.9.9.username, 10.9.9.9.password",
        ),
        (
            "CA Secret missing",
            json!({"vcenters": [{"server": src, "port": lab.env.source().port(), "caSecret": {"name": "no-such-ca"}}]}),
            "spec.vcenters[0].caSecret",
        ),
        (
            "CA Secret without the key",
            json!({"vcenters": [{"server": dst.host(), "port": dst.port(), "caSecret": {"name": VCENTER_CA, "key": "other.pem"}}]}),
            "spec.vcenters[0].caSecret: Secret vsphere-migration/vcenter-ca with key other.pem does not exist",
        ),
        (
            "every vCenter is a target",
            json!({"targetVCenterCredentialsSecret": {"name": "all-targets-creds"},
                   "failureDomains": [{"name": "target-fd", "region": "r", "zone": "z", "server": src, "topology": base["failureDomains"][0]["topology"].clone()}]}),
            "every vCenter in the Infrastructure is also a target in spec.failureDomains",
        ),
    ];
    let mut names = Vec::new();
    for (i, (case, edit, _)) in operator_cases.iter().enumerate() {
        let mut spec = base.clone();
        for (k, v) in edit.as_object().unwrap() {
            spec[k] = v.clone();
        }
        let name = format!("invalid-{i}");
        api.create(&PostParams::default(), &object(&name, &spec)?)
            .await
            .with_context(|| format!("{case}: the schema accepts it"))?;
        names.push(name);
    }
    for (name, (case, _, expected)) in names.iter().zip(operator_cases.iter()) {
        cases += 1;
        let m = lab.until(name, "InvalidSpec", |m| condition(m, "Ready").1 == "InvalidSpec").await;
        let m = match m {
            Ok(m) => m,
            Err(e) => {
                failures.push(format!("{case}: no InvalidSpec condition: {e:#}"));
                continue;
            }
        };
        let (_, _, message) = condition(&m, "Ready");
        if !message.contains(expected) {
            failures.push(format!("{case}: condition without {expected:?}: {message}"));
            continue;
        }
        let status = m.status.clone().unwrap_or_default();
        if status.started_at.is_some() || !status.history.is_empty() {
            failures.push(format!("{case}: the migration started anyway"));
        }
        report(&lab.dir, format!("operator| {case:<42} | {message}"));
    }
    // The schema did not accept the secret in passing: nothing of it in any status.
    ensure!(op.healthy().await);
    report(&lab.dir, format!("{cases} invalid inputs, {} refused as expected", cases - failures.len()));
    if !failures.is_empty() {
        bail!("{} of {cases} cases not refused as expected:\n{}", failures.len(), failures.join("\n"));
    }
    ensure!(cases >= 20);
    drop(op);
    let _ = TARGET_CREDS;
    lab.stop().await;
    Ok(())
}

/// The part of a refusal about the expected field (the API server lists every cause).
fn first_cause(error: &str, expected: &str) -> String {
    let at = error.find(expected).unwrap_or(0);
    let start = error[..at].rfind([',', '[']).map(|i| i + 1).unwrap_or(0);
    let tail = &error[start..];
    let end = tail.find(", spec.").unwrap_or(tail.len()).min(220);
    tail[..tail.floor_char_boundary(end)].trim().to_string()
}
