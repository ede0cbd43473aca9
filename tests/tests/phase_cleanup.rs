//! Cleanup against the real API server, after the real earlier phases have moved every
//! machine to the target (the real machine-api, the simulator running): the recorded source vCenter leaves the
//! Infrastructure (with its failure domain), the cloud provider config (only its entry;
//! INI: its section, and [Workspace] moves to the target) and vsphere-creds (only its
//! keys); the cluster is healthy on one vCenter afterwards; a re-run removes nothing (the
//! Go controller's re-run removed the target); crash anywhere converges; the rollback
//! restores all three exactly; plan mode changes nothing; a source that is also a target
//! is refused, and machines still in the source are waited for; the installer's category and
//! folder in the source are named, and removed (journalled, rolled back) when the spec asks.

mod part2_support;
mod phase_support;

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;
use vsm_api::SourceVCenter;
use vsm_host::runtime::Direction;
use vsm_host::runtime::bindings::Outcome;
use vsm_testenv::harness::{Harness, TARGET_FD, target_spec};
use vsm_testenv::sim::objects as o;
use vsm_testenv::sim::{SOURCE_FAILURE_DOMAIN, SeedOptions, SimOptions, Simulator};
use vsm_vsphere::{ObjectKind, VsphereError};

use part2_support::*;
use phase_support::*;

async fn state(c: &PhaseEnv) -> Result<[Value; 3]> {
    Ok([
        content(&c.infrastructure().await?),
        content(&c.config_map(o::CLOUD_CONFIG_NS, o::CLOUD_CONFIG_NAME).await?.context("cloud config")?),
        content(&c.secret(o::CREDS_NS, o::CREDS_NAME).await?.context("vsphere-creds")?),
    ])
}

async fn same_state(c: &PhaseEnv, what: &str, want: &[Value; 3]) -> Result<()> {
    let now = state(c).await?;
    for (i, name) in ["Infrastructure", "cloud config", "vsphere-creds"].iter().enumerate() {
        same_content(&format!("{what}: {name}"), &want[i], &now[i])?;
    }
    Ok(())
}

#[tokio::test]
async fn cleanup_removes_only_the_recorded_source_everywhere() -> Result<()> {
    let mut c = start_seeded_real("phase-cleanup", "cleanup", &SeedOptions::default()).await?;
    let sim = Simulator::start(c.env, SimOptions::instant());
    let (src, dst) = (c.env.source().host(), c.env.target().host());

    // Bad input: a recorded source that is also a target is never removed.
    let bad = Harness::with_sources(
        c.env,
        "phase-cleanup-bad-sources",
        target_spec(c.env),
        vec![SourceVCenter { server: dst.clone(), port: c.env.target().port() }],
    )
    .await?;
    let plugin = bad.phase("cleanup").await?;
    let run = bad.run(&plugin, Direction::Execute).await?;
    ensure!(!failed_with(
        &run,
        &format!(
            "vCenter {dst} is recorded as a source and named by spec.failureDomains as a target: refusing to remove it"
        )
    )?);

    // Machines still in the source: waited for, nothing removed.
    run_phases(&c, BEFORE_WORKERS).await?;
    let untouched = state(&c).await?;
    let first = one_call(&c, Direction::Execute).await?;
    let Outcome::Wait(w) = &first else { bail!("expected a wait, got {first:?}") };
    ensure!(
        w.message.starts_with(
            "6 machine(s) still run in the source vCenter, which cannot be removed before they are gone: "
        ),
        "{}",
        w.message
    );
    same_state(&c, "while machines are in the source", &untouched).await?;

    run_phases(&c, &["delete-cpms", "create-workers", "recreate-cpms", "scale-old-machines"]).await?;
    let before = state(&c).await?;
    let yaml = cloud_config_text(&c).await?;

    // Success.
    let run = c.execute_done().await?;
    let infra = c.infrastructure().await?;
    let (servers, fds) = infra_lists(&infra);
    ensure!(servers == [dst.clone()], "{servers:?}");
    ensure!(fds == [(TARGET_FD.to_string(), dst.clone())], "{fds:?}");
    let mut expected_spec = before[0]["spec"].clone();
    expected_spec["platformSpec"]["vsphere"]["vcenters"] =
        infra.data["spec"]["platformSpec"]["vsphere"]["vcenters"].clone();
    expected_spec["platformSpec"]["vsphere"]["failureDomains"] =
        infra.data["spec"]["platformSpec"]["vsphere"]["failureDomains"].clone();
    ensure!(infra.data["spec"] == expected_spec, "only the source's entries left the Infrastructure");
    let start = yaml.find(&format!("\n  {src}:\n")).context("source entry")? + 1;
    let end = yaml.find(&format!("\n  {dst}:\n")).context("target entry")? + 1;
    let expected_yaml = format!("{}{}", &yaml[..start], &yaml[end..]);
    ensure!(cloud_config_text(&c).await? == expected_yaml, "got:\n{}", cloud_config_text(&c).await?);
    ensure!(creds_keys(&c).await? == [format!("{dst}.password"), format!("{dst}.username")]);
    let id = c.cluster.infra_id.clone();
    let (category, folder) = (format!("openshift-{id}"), format!("/src-dc/vm/{id}"));
    ensure!(
        run.message()
            == format!(
                "removed source vCenter(s) {src}: Infrastructure: vCenter {src} and failure domain(s) {SOURCE_FAILURE_DOMAIN}; openshift-config/cloud-provider-config: the entry of {src}; kube-system/vsphere-creds: {src}.username, {src}.password; \
                 left in the source (spec.cleanup.sourceVSphereObjects removes them): vCenter {src}: tag category {category}, folder {folder}"
            ),
        "{}",
        run.message()
    );
    operators_healthy(&c, &[]).await?;
    let after = state(&c).await?;

    // A re-run cannot remove the target: the source was recorded at the start.
    let again = c.execute_done().await?;
    ensure!(again.message().starts_with("nothing left to remove"), "{}", again.message());
    same_state(&c, "after a re-run", &after).await?;

    // Rollback: all three exactly as before.
    c.rollback_done().await?;
    same_state(&c, "after rollback", &before).await?;

    // A crash at any import, then a re-run, converges.
    let (cr, ar, br) = (&c, &after, &before);
    let points =
        c.h.crash_everywhere(
            &c.plugin,
            Direction::Execute,
            move |_| async move {
                cr.rollback_done().await?;
                same_state(cr, "before the crash", br).await
            },
            move |n| async move { same_state(cr, &format!("crash at {n}"), ar).await },
        )
        .await?;
    // Seven, the reads of the target CAs UpdateConfig recorded and of the two CA Secrets, and
    // the record of the installer's objects in the source and their two look-ups.
    ensure!(points == 13, "{points} crash points");
    c.rollback_done().await?;

    // Plan mode: validated and recorded, nothing removed.
    let plan = c.h.plan(&c.plugin).await?;
    ensure!(plan.outputs.plan.len() == 3, "{:?}", plan.outputs.plan);
    same_state(&c, "after a plan", &before).await?;

    // The legacy INI format: the source's section goes, [Workspace] moves to the target.
    let ini_head = format!(
        "# legacy\n[Global]\nsecret-name = \"vsphere-creds\"\nsecret-namespace = \"kube-system\"\ninsecure-flag = \"0\"\n\n[Workspace]\nserver = \"{src}\"\ndatacenter = \"src-dc\"\ndefault-datastore = \"src-ds\"\nfolder = \"/src-dc/vm/{id}\"\nresourcepool-path = \"/src-dc/host/src-cluster/Resources\"\n\n"
    );
    let src_section =
        format!("[VirtualCenter \"{src}\"]\ndatacenters = \"src-dc\"\nport = \"{}\"\n\n", c.env.source().port());
    let rest = format!(
        "[VirtualCenter \"{dst}\"]\ndatacenters = \"dst-dc\"\nport = \"{}\"\n\n[Labels]\nregion = openshift-region\nzone = openshift-zone\n",
        c.env.target().port()
    );
    let ini = format!("{ini_head}{src_section}{rest}");
    set_cloud_config_text(&c, &ini).await?;
    c.execute_done().await?;
    let moved = ini_head
        .replace(&format!("server = \"{src}\""), &format!("server = \"{dst}\""))
        .replace("datacenter = \"src-dc\"", "datacenter = \"dst-dc\"")
        .replace("default-datastore = \"src-ds\"", "default-datastore = \"dst-ds\"")
        .replace(&format!("folder = \"/src-dc/vm/{id}\""), &format!("folder = \"/dst-dc/vm/{id}\""))
        .replace("/src-dc/host/src-cluster/Resources", "/dst-dc/host/dst-cluster/Resources");
    let text = cloud_config_text(&c).await?;
    ensure!(text == format!("{moved}{rest}"), "got:\n{text}");
    operators_healthy(&c, &[]).await?;
    c.rollback_done().await?;
    ensure!(cloud_config_text(&c).await? == ini, "INI rolled back exactly");
    set_cloud_config_text(&c, &yaml).await?;

    // Asked for (spec.cleanup.sourceVSphereObjects): the installer's category (with its tag)
    // and the cluster's folder, empty now, leave the source, journalled; the template beside
    // the folder stays; a rollback creates them again under the same names.
    let vc = c.h.vsphere(&src).await?;
    ensure!(vc.category(&category).await?.is_some(), "the seed made the installer's category");
    vc.find(ObjectKind::Folder, &folder).await?;
    c.h.migration.spec.spec.cleanup.source_vsphere_objects = true;
    let run = c.execute_done().await?;
    let removed =
        format!("source vSphere objects: vCenter {src}: tag category {category} with tag(s) {id}, folder {folder}");
    ensure!(run.message().contains(&removed), "{}", run.message());
    ensure!(vc.category(&category).await?.is_none(), "the category is gone");
    ensure!(
        matches!(vc.find(ObjectKind::Folder, &folder).await, Err(VsphereError::NotFound { .. })),
        "the folder is gone"
    );
    ensure!(!vc.list_vms("/src-dc/vm").await?.is_empty(), "the template stays");
    c.rollback_done().await?;
    same_state(&c, "after the rollback of a removal in vSphere", &before).await?;
    let back = vc.category(&category).await?.context("the category is back")?;
    let tags: Vec<String> = vc.tags_of_category(&back.id).await?.into_iter().map(|t| t.name).collect();
    ensure!(tags == [id.clone()], "{tags:?}");
    vc.find(ObjectKind::Folder, &folder).await?;
    c.h.migration.spec.spec.cleanup.source_vsphere_objects = false;

    sim.stop().await;
    Ok(())
}
