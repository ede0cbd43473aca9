//! CreateFolder against the real environment (the target vcsim): `/<dc>/vm/<infraID>` by
//! default; `topology.folder` honoured, nested levels created one by one (the Go
//! controller always made `<infraID>` and ignored it); a re-run changes nothing; the
//! rollback removes only the levels this migration made and keeps a non-empty folder;
//! a crash anywhere converges; plan mode makes nothing; a folder outside its datacenter
//! is refused.

mod phase_support;

use std::sync::Arc;

use anyhow::{Result, ensure};
use vsm_host::runtime::Direction;
use vsm_testenv::vcsim::target;
use vsm_vsphere::{Client, ObjectKind};

use phase_support::*;

async fn exists(vc: &Client, path: &str) -> Result<bool> {
    match vc.find(ObjectKind::Folder, path).await {
        Ok(_) => Ok(true),
        Err(vsm_vsphere::VsphereError::NotFound { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[tokio::test]
async fn create_folder_honours_topology_folder_and_removes_only_its_own_levels() -> Result<()> {
    let mut c = start("phase-create-folder", "create-folder").await?;
    let vc: Arc<Client> = c.h.vsphere(&c.env.target().host()).await?;
    let host = c.env.target().host();
    let default = format!("/dst-dc/vm/{}", c.cluster.infra_id);
    ensure!(!exists(&vc, &default).await?);

    // Default folder.
    let run = c.execute_done().await?;
    ensure!(run.message() == format!("VM folders ready in vCenter {host}: {default} created"), "{}", run.message());
    let journalled: Vec<String> = run.outputs.backups.iter().map(|b| b.name.clone()).collect();
    ensure!(exists(&vc, &default).await?);

    // Idempotent.
    let state = c.state().await?;
    let run = c.execute_done().await?;
    ensure!(run.message() == format!("VM folders ready in vCenter {host}: {default} existed"), "{}", run.message());
    ensure!(
        run.outputs.backups.iter().all(|b| journalled.contains(&b.name)) && c.state().await? == state,
        "a re-run changed something"
    );

    // Rollback.
    let run = c.rollback_done().await?;
    ensure!(run.message() == format!("removed the folder(s) this migration created: {default}"), "{}", run.message());
    ensure!(!exists(&vc, &default).await?);

    // topology.folder, nested: both levels made, both removed.
    let nested = "/dst-dc/vm/team-a/cluster-1";
    c.h.migration.spec.spec.failure_domains[0].topology.folder = Some(nested.into());
    let run = c.execute_done().await?;
    ensure!(run.message() == format!("VM folders ready in vCenter {host}: {nested} created"), "{}", run.message());
    ensure!(exists(&vc, "/dst-dc/vm/team-a").await? && exists(&vc, nested).await?);
    ensure!(!exists(&vc, &default).await?, "the Go controller made <infraID> whatever topology.folder said");
    c.rollback_done().await?;
    ensure!(!exists(&vc, "/dst-dc/vm/team-a").await?);

    // A level that existed before stays.
    vc.create_folder("/dst-dc/vm/team-a").await?;
    c.execute_done().await?;
    c.rollback_done().await?;
    ensure!(exists(&vc, "/dst-dc/vm/team-a").await? && !exists(&vc, nested).await?);
    vc.delete_folder("/dst-dc/vm/team-a").await?;

    // A folder holding a VM is kept, reported, and the rollback still finishes.
    c.execute_done().await?;
    vc.create_vm(nested, "leftover", target::RESOURCE_POOL_PATH, target::DATASTORE_PATH).await?;
    let run = c.rollback_done().await?;
    ensure!(
        run.message().starts_with(&format!("removed no folder; kept {nested} in vCenter {host} (")),
        "{}",
        run.message()
    );
    ensure!(run.message().ends_with("because it is not empty; remove it by hand once it is"), "{}", run.message());
    ensure!(exists(&vc, nested).await?);
    vc.destroy_vm(&format!("{nested}/leftover")).await?;
    let run = c.rollback_done().await?;
    ensure!(
        run.message() == format!("removed the folder(s) this migration created: {nested}, /dst-dc/vm/team-a"),
        "{}",
        run.message()
    );

    // A crash at any import converges.
    let cr = &c;
    let vr = &vc;
    let points =
        c.h.crash_everywhere(
            &c.plugin,
            Direction::Execute,
            move |_| async move {
                cr.rollback_done().await?;
                ensure!(!exists(vr, "/dst-dc/vm/team-a").await?);
                Ok(())
            },
            move |n| async move {
                ensure!(exists(vr, nested).await?, "crash at {n}");
                Ok(())
            },
        )
        .await?;
    ensure!(points >= 5, "{points} crash points");
    c.rollback_done().await?;
    ensure!(!exists(&vc, "/dst-dc/vm/team-a").await?, "rollback after the crash tests");

    // Plan mode.
    let plan = c.h.plan(&c.plugin).await?;
    ensure!(
        plan.message() == format!("VM folders planned in vCenter {host}: {nested} to be created"),
        "{}",
        plan.message()
    );
    ensure!(!exists(&vc, "/dst-dc/vm/team-a").await?);

    // Bad input: a folder outside the failure domain's datacenter.
    c.h.migration.spec.spec.failure_domains[0].topology.folder = Some("/src-dc/vm/elsewhere".into());
    let run = c.execute().await?;
    failed_with(
        &run,
        "failure domain target-fd: topology.folder \"/src-dc/vm/elsewhere\" is not a folder inside datacenter dst-dc's VM folder (/dst-dc/vm/<name>)",
    )?;
    Ok(())
}
