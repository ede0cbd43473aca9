//! UpdateInfrastructure against the real API server and the real Infrastructure CRD (CEL
//! rules included): the target vCenter and failure domain added, everything else kept; a
//! re-run yields the identical object (the Go controller appended the failure domains
//! again) with datacenters in a fixed order (it used map order); the rollback restores the
//! before-image; a legacy install gets its source described first; a crash anywhere
//! converges; plan mode is validated and changes nothing; a clashing name is refused.

mod phase_support;

use anyhow::{Result, ensure};
use kube::api::{DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};
use vsm_host::runtime::Direction;
use vsm_testenv::sim::objects as o;

use phase_support::*;

fn vsphere(infra: &DynamicObject) -> Value {
    infra.data.pointer("/spec/platformSpec/vsphere").cloned().unwrap_or(Value::Null)
}

/// The Infrastructure's content without the two lists the phase owns.
fn rest(infra: &DynamicObject) -> Value {
    let mut c = content(infra);
    if let Some(v) = c.pointer_mut("/spec/platformSpec/vsphere").and_then(Value::as_object_mut) {
        v.remove("vcenters");
        v.remove("failureDomains");
    }
    c
}

fn fd_names(infra: &DynamicObject) -> Vec<String> {
    vsphere(infra)["failureDomains"]
        .as_array()
        .map(|a| a.iter().filter_map(|f| f["name"].as_str().map(String::from)).collect())
        .unwrap_or_default()
}

async fn set_vsphere(c: &PhaseEnv, v: &Value) -> Result<()> {
    let patch = json!({"spec": {"platformSpec": {"vsphere": {"vcenters": v["vcenters"], "failureDomains": v.get("failureDomains")}}}});
    o::infra_api(&c.client()).patch(o::INFRA_NAME, &PatchParams::default(), &Patch::Merge(patch)).await?;
    Ok(())
}

#[tokio::test]
async fn update_infrastructure_merges_the_targets_once_and_rolls_back() -> Result<()> {
    let mut c = start("phase-update-infrastructure", "update-infrastructure").await?;
    let dst = c.env.target();
    let before = c.infrastructure().await?;
    let original_vsphere = vsphere(&before);

    // Success.
    let run = c.execute_done().await?;
    ensure!(
        run.message()
            == format!("updated the Infrastructure: vCenter(s) {} and failure domain(s) target-fd", dst.host()),
        "{}",
        run.message()
    );
    let after = c.infrastructure().await?;
    let vcenters = vsphere(&after)["vcenters"].clone();
    ensure!(vcenters[0] == original_vsphere["vcenters"][0], "the source entry is kept");
    ensure!(vcenters[1] == json!({"server": dst.host(), "port": dst.port(), "datacenters": ["dst-dc"]}), "{vcenters}");
    ensure!(fd_names(&after) == ["source-fd", "target-fd"], "{:?}", fd_names(&after));
    let added = &vsphere(&after)["failureDomains"][1];
    ensure!(added["topology"]["folder"] == json!(format!("/dst-dc/vm/{}", c.cluster.infra_id)), "{added}");
    ensure!(added["topology"]["template"] == json!("/dst-dc/vm/rhcos-template"), "{added}");
    same_content("Infrastructure apart from vcenters/failureDomains", &rest(&before), &rest(&after))?;

    // Idempotent: the identical object, no write.
    c.execute_done().await?;
    ensure!(rv(&c.infrastructure().await?) == rv(&after), "a re-run wrote the Infrastructure");

    // Rollback: the before-image.
    c.rollback_done().await?;
    same_content("Infrastructure after rollback", &content(&before), &content(&c.infrastructure().await?))?;

    // Two failure domains on the target, datacenters in a fixed order, stable on re-runs.
    let mut second = c.h.migration.spec.spec.failure_domains[0].clone();
    second.name = "target-fd-2".into();
    second.zone = "dst-zone-b".into();
    second.topology.datacenter = "another-dc".into();
    second.topology.compute_cluster = "/another-dc/host/c".into();
    second.topology.datastore = "/another-dc/datastore/ds".into();
    second.topology.resource_pool = None;
    second.topology.template = None;
    c.h.migration.spec.spec.failure_domains.push(second);
    c.execute_done().await?;
    let once = c.infrastructure().await?;
    ensure!(vsphere(&once)["vcenters"][1]["datacenters"] == json!(["dst-dc", "another-dc"]), "{}", vsphere(&once));
    ensure!(fd_names(&once) == ["source-fd", "target-fd", "target-fd-2"]);
    for _ in 0..2 {
        c.execute_done().await?;
        ensure!(vsphere(&c.infrastructure().await?) == vsphere(&once), "not identical on a re-run");
    }
    c.rollback_done().await?;
    c.h.migration.spec.spec.failure_domains.truncate(1);
    same_content("Infrastructure", &content(&before), &content(&c.infrastructure().await?))?;

    // A crash at any import converges.
    let cr = &c;
    let (bc, want) = (content(&before), vsphere(&after));
    let (bc, want) = (&bc, &want);
    let points =
        c.h.crash_everywhere(
            &c.plugin,
            Direction::Execute,
            move |_| async move {
                cr.rollback_done().await?;
                same_content("Infrastructure before a crash", bc, &content(&cr.infrastructure().await?))
            },
            move |n| async move {
                ensure!(vsphere(&cr.infrastructure().await?) == *want, "crash at {n}");
                Ok(())
            },
        )
        .await?;
    ensure!(points >= 2, "{points} crash points (read, update)");
    c.rollback_done().await?;

    // Plan mode: the API server validates the update (dryRun=All), nothing changes.
    let plan = c.h.plan(&c.plugin).await?;
    ensure!(plan.message().starts_with("would update the Infrastructure"), "{}", plan.message());
    ensure!(plan.outputs.plan.iter().any(|p| p.target == "Infrastructure cluster"), "{:?}", plan.outputs.plan);
    same_content("Infrastructure after plan", &content(&before), &content(&c.infrastructure().await?))?;

    // A legacy install: no failure domains yet; the source is described first.
    let mut legacy = original_vsphere.clone();
    legacy.as_object_mut().expect("an object").remove("failureDomains");
    set_vsphere(&c, &legacy).await?;
    let legacy_before = c.infrastructure().await?;
    ensure!(fd_names(&legacy_before).is_empty());
    let run = c.execute_done().await?;
    ensure!(
        run.message().contains("first described as failure domain(s) (generated-failure-domain)"),
        "{}",
        run.message()
    );
    let described = c.infrastructure().await?;
    ensure!(fd_names(&described) == ["generated-failure-domain", "target-fd"], "{:?}", fd_names(&described));
    let generated = &vsphere(&described)["failureDomains"][0];
    ensure!(
        generated["server"] == json!(c.env.source().host()) && generated["topology"]["datacenter"] == json!("src-dc"),
        "{generated}"
    );
    ensure!(generated["topology"]["computeCluster"] == json!("/src-dc/host/src-cluster"), "{generated}");
    c.execute_done().await?;
    ensure!(rv(&c.infrastructure().await?) == rv(&described), "legacy re-run wrote again");
    let (lb, want) = (content(&legacy_before), vsphere(&described));
    let (lb, want) = (&lb, &want);
    let points =
        c.h.crash_everywhere(
            &c.plugin,
            Direction::Execute,
            move |_| async move {
                cr.rollback_done().await?;
                same_content("legacy Infrastructure before a crash", lb, &content(&cr.infrastructure().await?))
            },
            move |n| async move {
                ensure!(vsphere(&cr.infrastructure().await?) == *want, "legacy, crash at {n}");
                Ok(())
            },
        )
        .await?;
    ensure!(points >= 3, "{points} crash points (read, list masters, update)");
    c.rollback_done().await?;
    same_content(
        "legacy Infrastructure after rollback",
        &content(&legacy_before),
        &content(&c.infrastructure().await?),
    )?;
    set_vsphere(&c, &original_vsphere).await?;
    same_content("Infrastructure", &content(&before), &content(&c.infrastructure().await?))?;

    // Bad input: a target failure domain named like the source's.
    c.h.migration.spec.spec.failure_domains[0].name = "source-fd".into();
    let run = c.execute().await?;
    failed_with(
        &run,
        &format!(
            "failure domain \"source-fd\" already exists in the Infrastructure for vCenter {}, but the migration puts it on {}: \
             rename the target failure domain in spec.failureDomains",
            c.env.source().host(),
            dst.host()
        ),
    )?;
    same_content("Infrastructure", &content(&before), &content(&c.infrastructure().await?))?;
    Ok(())
}
