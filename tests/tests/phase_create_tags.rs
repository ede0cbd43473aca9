//! CreateTags against the real environment (the target vcsim): SINGLE categories, tags,
//! attachments to the datacenter and compute cluster, and the cluster's own tag (category
//! `openshift-<infraID>`, tag `<infraID>`) for the machine actuator; a re-run journals and attaches
//! nothing more; the rollback removes only what it made (pre-existing category and tag
//! stay); another tag of a SINGLE category already on the datacenter is a clear failure
//! with nothing created; a crash anywhere converges; plan mode creates nothing; a missing
//! cluster is named.

mod phase_support;

use std::sync::Arc;

use anyhow::{Result, ensure};
use vsm_host::runtime::Direction;
use vsm_testenv::vcsim::target;
use vsm_vsphere::{Cardinality, CategorySpec, Client, ObjectKind};

use phase_support::*;

const REGION: &str = "openshift-region";
const ZONE: &str = "openshift-zone";

/// `category=tag` pairs on an object.
async fn tags_on(vc: &Client, kind: ObjectKind, path: &str) -> Result<Vec<String>> {
    let obj = vc.find(kind, path).await?;
    Ok(vc.list_attached_tags(&obj).await?.into_iter().map(|t| format!("{}={}", t.category_name, t.name)).collect())
}

async fn dc_tags(vc: &Client) -> Result<Vec<String>> {
    tags_on(vc, ObjectKind::Datacenter, &format!("/{}", target::DATACENTER)).await
}

async fn cluster_tags(vc: &Client) -> Result<Vec<String>> {
    tags_on(vc, ObjectKind::ComputeCluster, target::CLUSTER_PATH).await
}

/// The installer's category of the seeded cluster.
fn cluster_category() -> String {
    format!("openshift-{}", vsm_testenv::sim::SeedOptions::default().infra_id)
}

/// Nothing of ours in the target vCenter.
async fn clean(vc: &Client) -> Result<()> {
    ensure!(vc.category_id(REGION).await?.is_none(), "category {REGION} left");
    ensure!(vc.category_id(ZONE).await?.is_none(), "category {ZONE} left");
    ensure!(vc.category_id(&cluster_category()).await?.is_none(), "the cluster's category left");
    ensure!(dc_tags(vc).await?.is_empty() && cluster_tags(vc).await?.is_empty());
    Ok(())
}

async fn tagged(vc: &Client) -> Result<()> {
    ensure!(dc_tags(vc).await? == ["openshift-region=dst-region"], "{:?}", dc_tags(vc).await?);
    ensure!(cluster_tags(vc).await? == ["openshift-zone=dst-zone-a"], "{:?}", cluster_tags(vc).await?);
    Ok(())
}

fn single(name: &str) -> CategorySpec {
    CategorySpec {
        name: name.into(),
        description: "made by the test".into(),
        cardinality: Cardinality::Single,
        associable_types: vec!["Datacenter".into(), "ClusterComputeResource".into()],
    }
}

#[tokio::test]
async fn create_tags_tags_the_target_and_undoes_only_its_own() -> Result<()> {
    let mut c = start("phase-create-tags", "create-tags").await?;
    let vc: Arc<Client> = c.h.vsphere(&c.env.target().host()).await?;
    clean(&vc).await?;

    // Success.
    let run = c.execute_done().await?;
    ensure!(run.message().starts_with("tagged 2 object(s) (2 attachment(s) new)"), "{}", run.message());
    let journalled: Vec<String> = run.outputs.backups.iter().map(|b| b.name.clone()).collect();
    tagged(&vc).await?;
    for name in [REGION, ZONE, cluster_category().as_str()] {
        ensure!(vc.category_id(name).await?.is_some(), "category {name} made");
    }
    let attached = vc.list_attached_tags(&vc.find(ObjectKind::Datacenter, "/dst-dc").await?).await?;
    ensure!(attached[0].cardinality == Cardinality::Single, "{attached:?}");

    // Idempotent: nothing new journalled or attached.
    let run = c.execute_done().await?;
    ensure!(run.message().starts_with("tagged 2 object(s) (0 attachment(s) new)"), "{}", run.message());
    // (A re-run lists the entries it finds, in case the status lost them; none is new.)
    ensure!(
        run.outputs.backups.iter().all(|b| journalled.contains(&b.name)),
        "a re-run journalled {:?}",
        run.outputs.backups
    );
    tagged(&vc).await?;

    // Rollback removes everything it made.
    c.rollback_done().await?;
    clean(&vc).await?;

    // A crash at any import converges.
    let cr = &c;
    let vr = &vc;
    let points =
        c.h.crash_everywhere(
            &c.plugin,
            Direction::Execute,
            move |_| async move {
                cr.rollback_done().await?;
                clean(vr).await
            },
            move |n| async move { tagged(vr).await.map_err(|e| e.context(format!("crash at {n}"))) },
        )
        .await?;
    ensure!(points >= 8, "{points} crash points");
    c.rollback_done().await?;
    clean(&vc).await?;

    // Plan mode: real reads, nothing made.
    let plan = c.h.plan(&c.plugin).await?;
    ensure!(plan.message().starts_with("would tag 2 object(s)"), "{}", plan.message());
    ensure!(
        plan.outputs.plan.iter().filter(|p| p.action == "create-tag-category").count() == 3,
        "{:?}",
        plan.outputs.plan
    );
    clean(&vc).await?;

    // Pre-existing category and tag (not attached): used, and kept by the rollback.
    let (region_id, _) = vc.ensure_category(&single(REGION)).await?;
    let (tag_id, _) = vc.ensure_tag(&region_id, "dst-region", "made by the test").await?;
    c.execute_done().await?;
    tagged(&vc).await?;
    c.rollback_done().await?;
    ensure!(
        vc.category_id(REGION).await? == Some(region_id.clone()),
        "a category this migration did not make was removed"
    );
    ensure!(
        vc.tag_id(&region_id, "dst-region").await? == Some(tag_id.clone()),
        "a tag this migration did not make was removed"
    );
    ensure!(dc_tags(&vc).await?.is_empty() && vc.category_id(ZONE).await?.is_none());

    // The Go controller let vCenter refuse a second tag of a SINGLE category half-way:
    // here it is a clear failure before anything is made.
    let (other, _) = vc.ensure_tag(&region_id, "other-region", "made by the test").await?;
    let dc = vc.find(ObjectKind::Datacenter, "/dst-dc").await?;
    vc.attach_tag(&other, &dc).await?;
    let run = c.execute().await?;
    let retryable = failed_with(
        &run,
        &format!(
            "datacenter /dst-dc in vCenter {} already carries tag \"other-region\" of the single-cardinality category openshift-region, \
             so it cannot also carry \"dst-region\" (failure domain target-fd): detach \"other-region\" from it, or set the failure domain's region to \"other-region\"",
            c.env.target().host()
        ),
    )?;
    ensure!(!retryable);
    ensure!(vc.category_id(ZONE).await?.is_none(), "nothing was created");
    ensure!(cluster_tags(&vc).await?.is_empty());
    vc.detach_tag(&other, &dc).await?;
    vc.delete_category(&region_id).await?;
    clean(&vc).await?;

    // Bad input: a compute cluster that does not exist.
    c.h.migration.spec.spec.failure_domains[0].topology.compute_cluster = "/dst-dc/host/no-such-cluster".into();
    let run = c.execute().await?;
    failed_with(
        &run,
        &format!(
            "compute cluster /dst-dc/host/no-such-cluster not found in vCenter {} (failure domain target-fd)",
            c.env.target().host()
        ),
    )?;
    clean(&vc).await?;
    Ok(())
}
