//! The vSphere client against a real vcsim: inventory lookups, folders, tags, VMs, and
//! the number of round trips each takes.

mod vsphere_support;

use vsm_testenv::vcsim::source;
use vsm_vsphere::{Cardinality, CategorySpec, ObjectKind, PowerState, SessionPool, VsphereError};

use vsphere_support::{fast_options, start};

#[tokio::test]
async fn find_every_kind_and_count_round_trips() -> anyhow::Result<()> {
    let sim = start(true).await?;
    let pool = SessionPool::new(fast_options());
    let c = pool.client(&sim.spec()).await?;

    let about = c.about().await?;
    assert_eq!(about.api_type, "VirtualCenter");
    assert!(!about.instance_uuid.is_empty());

    let vms = c.list_vms(source::VM_FOLDER_PATH).await?;
    assert!(!vms.is_empty(), "the source preset has VMs");
    let vm_path = vms[0].path.clone();

    let cases = [
        (ObjectKind::Datacenter, format!("/{}", source::DATACENTER), "Datacenter"),
        (ObjectKind::ComputeCluster, source::CLUSTER_PATH.to_string(), "ClusterComputeResource"),
        (ObjectKind::ResourcePool, source::RESOURCE_POOL_PATH.to_string(), "ResourcePool"),
        (ObjectKind::Datastore, source::DATASTORE_PATH.to_string(), "Datastore"),
        (ObjectKind::Network, source::NETWORK_PATH.to_string(), "Network"),
        (ObjectKind::Folder, source::VM_FOLDER_PATH.to_string(), "Folder"),
        (ObjectKind::VirtualMachine, vm_path.clone(), "VirtualMachine"),
    ];
    let mut counts = Vec::new();
    for (kind, path, type_name) in &cases {
        let before = pool.stats().soap_round_trips;
        let obj = c.find(*kind, path).await?;
        let trips = pool.stats().soap_round_trips - before;
        assert_eq!(obj.moref.type_name, *type_name, "{path}");
        assert_eq!(obj.path, *path);
        assert_eq!(trips, 1, "one RetrievePropertiesEx per lookup of {path}");
        counts.push(format!("{kind:?}={trips}"));
    }
    println!("ROUND_TRIPS find (SOAP per lookup): {}", counts.join(" "));

    // The distributed port group, by path and by bare name.
    let dc = format!("/{}", source::DATACENTER);
    let pg = c.find_network(&dc, "DC0_DVPG0").await?;
    assert_eq!(pg.moref.type_name, "DistributedVirtualPortgroup");
    assert_eq!(c.find(ObjectKind::Network, &pg.path).await?.moref, pg.moref);
    assert_eq!(c.find_network(&dc, source::NETWORK).await?.path, source::NETWORK_PATH);

    // Wrong kind, missing path, bad path.
    assert!(matches!(c.find(ObjectKind::Folder, source::CLUSTER_PATH).await, Err(VsphereError::NotFound { .. })));
    match c.find(ObjectKind::Datastore, "/src-dc/datastore/nope").await {
        Err(VsphereError::NotFound { path }) => assert_eq!(path, "/src-dc/datastore/nope"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(c.find(ObjectKind::Datacenter, "src-dc").await, Err(VsphereError::Invalid { .. })));

    // VM summaries carry what the phases need.
    let vm = &vms[0];
    assert!(!vm.uuid.is_empty());
    assert!(!vm.template);
    assert_eq!(vm.path, format!("{}/{}", source::VM_FOLDER_PATH, vm.name));
    let before = pool.stats().soap_round_trips;
    c.list_vms(source::VM_FOLDER_PATH).await?;
    println!("ROUND_TRIPS list_vms (SOAP): {}", pool.stats().soap_round_trips - before);

    pool.shutdown().await;
    assert_eq!(pool.stats().open_sessions, 0);
    Ok(())
}

#[tokio::test]
async fn nested_folders_create_and_delete() -> anyhow::Result<()> {
    let sim = start(false).await?;
    let pool = SessionPool::new(fast_options());
    let c = pool.client(&sim.spec()).await?;
    let top = "/dst-dc/vm/ocp";
    let deep = "/dst-dc/vm/ocp/infra-1/masters";

    let before = pool.stats().soap_round_trips;
    let (folder, created) = c.create_folder(deep).await?;
    println!("ROUND_TRIPS create_folder 3 new levels (SOAP): {}", pool.stats().soap_round_trips - before);
    assert!(created);
    assert_eq!(folder.path, deep);
    assert_eq!(c.find(ObjectKind::Folder, deep).await?.moref, folder.moref);
    assert_eq!(c.find(ObjectKind::Folder, "/dst-dc/vm/ocp/infra-1").await?.path, "/dst-dc/vm/ocp/infra-1");

    // Again: nothing created, same folder.
    let before = pool.stats().soap_round_trips;
    let (again, created) = c.create_folder(&format!("{deep}/")).await?;
    println!("ROUND_TRIPS create_folder existing (SOAP): {}", pool.stats().soap_round_trips - before);
    assert!(!created);
    assert_eq!(again.moref, folder.moref);

    // Not under a datacenter folder.
    assert!(c.create_folder("/nodc/vm/x").await.is_err());

    // A non-empty folder is refused; leaves first, then the rest.
    match c.delete_folder(top).await {
        Err(VsphereError::Invalid { message }) => {
            assert!(message.contains("not empty"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    assert!(c.delete_folder(deep).await?);
    assert!(!c.delete_folder(deep).await?, "already gone");
    assert!(c.delete_folder("/dst-dc/vm/ocp/infra-1").await?);
    assert!(c.delete_folder(top).await?);
    assert!(matches!(c.find(ObjectKind::Folder, top).await, Err(VsphereError::NotFound { .. })));
    pool.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn tags_are_idempotent() -> anyhow::Result<()> {
    let sim = start(false).await?;
    let pool = SessionPool::new(fast_options());
    let c = pool.client(&sim.spec()).await?;
    let dc = c.find(ObjectKind::Datacenter, "/dst-dc").await?;
    let cluster = c.find(ObjectKind::ComputeCluster, "/dst-dc/host/dst-cluster").await?;
    let spec = CategorySpec {
        name: "openshift-region".into(),
        description: "OpenShift region for vSphere failure domains".into(),
        cardinality: Cardinality::Single,
        associable_types: vec!["Datacenter".into(), "ClusterComputeResource".into()],
    };

    let rest = |p: &SessionPool| p.stats().rest_round_trips;
    let b = rest(&pool);
    let (cat, created) = c.ensure_category(&spec).await?;
    println!("ROUND_TRIPS ensure_category new, 0 existing categories (REST): {}", rest(&pool) - b);
    assert!(created);
    // A second, unrelated category so the lookups have something to scan past.
    let zone = CategorySpec { name: "openshift-zone".into(), ..spec.clone() };
    let (zone_id, _) = c.ensure_category(&zone).await?;
    let b = rest(&pool);
    let (cat2, created) = c.ensure_category(&spec).await?;
    println!("ROUND_TRIPS ensure_category existing, 2 categories (REST): {}", rest(&pool) - b);
    assert!(!created);
    assert_eq!(cat, cat2);

    // Same name, other cardinality: refused, not silently accepted.
    let multi = CategorySpec { cardinality: Cardinality::Multiple, ..spec.clone() };
    assert!(matches!(c.ensure_category(&multi).await, Err(VsphereError::Invalid { .. })));

    let b = rest(&pool);
    let (tag, created) = c.ensure_tag(&cat, "us-east", "Region: us-east").await?;
    println!("ROUND_TRIPS ensure_tag new, empty category (REST): {}", rest(&pool) - b);
    assert!(created);
    c.ensure_tag(&cat, "us-west", "Region: us-west").await?;
    let b = rest(&pool);
    let (tag2, created) = c.ensure_tag(&cat, "us-east", "Region: us-east").await?;
    println!("ROUND_TRIPS ensure_tag existing, 2 tags in category (REST): {}", rest(&pool) - b);
    assert!(!created);
    assert_eq!(tag, tag2);
    assert!(matches!(c.ensure_tag("urn:nope", "x", "").await, Err(VsphereError::NotFound { .. })));

    // Attach twice, list, detach twice.
    c.attach_tag(&tag, &dc).await?;
    c.attach_tag(&tag, &dc).await?;
    let (zone_tag, _) = c.ensure_tag(&zone_id, "us-east-1a", "Zone: us-east-1a").await?;
    c.attach_tag(&zone_tag, &cluster).await?;

    let b = rest(&pool);
    let attached = c.list_attached_tags(&dc).await?;
    println!("ROUND_TRIPS list_attached_tags, 1 tag (REST): {}", rest(&pool) - b);
    assert_eq!(attached.len(), 1, "{attached:?}");
    assert_eq!(attached[0].id, tag);
    assert_eq!(attached[0].name, "us-east");
    assert_eq!(attached[0].category_name, "openshift-region");
    assert_eq!(attached[0].cardinality, Cardinality::Single);
    assert_eq!(c.list_attached_objects(&tag).await?, vec![(dc.moref.type_name.clone(), dc.moref.value.clone())]);
    assert_eq!(c.list_attached_tags(&cluster).await?[0].category_name, "openshift-zone");

    c.detach_tag(&tag, &dc).await?;
    c.detach_tag(&tag, &dc).await?;
    assert!(c.list_attached_tags(&dc).await?.is_empty());
    assert!(c.list_attached_objects(&tag).await?.is_empty());

    assert!(c.delete_tag(&tag).await?);
    assert!(!c.delete_tag(&tag).await?);
    assert!(c.delete_category(&cat).await?);
    assert!(!c.delete_category(&cat).await?);
    // Deleting the category took its tags along.
    let (_, created) = c.ensure_category(&spec).await?;
    assert!(created);
    pool.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn clone_template_and_destroy_vms() -> anyhow::Result<()> {
    let sim = start(true).await?;
    let pool = SessionPool::new(fast_options());
    let c = pool.client(&sim.spec()).await?;
    let vms = c.list_vms(source::VM_FOLDER_PATH).await?;
    let src = vms.first().expect("source preset has VMs").path.clone();
    let (folder, _) = c.create_folder("/src-dc/vm/clones").await?;

    let clone = c
        .clone_vm(&src, &folder.path, "clone-0", Some(source::RESOURCE_POOL_PATH), Some(source::DATASTORE_PATH), true)
        .await?;
    assert_eq!(clone.path, "/src-dc/vm/clones/clone-0");
    assert_eq!(clone.power_state, PowerState::PoweredOn);
    assert_ne!(clone.uuid, vms[0].uuid);
    let listed = c.list_vms(&folder.path).await?;
    assert_eq!(listed.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(), ["clone-0"]);

    // A duplicate name in the same folder is an AlreadyExists error.
    let dup = c.clone_vm(&src, &folder.path, "clone-0", None, None, false).await;
    assert!(matches!(dup, Err(VsphereError::AlreadyExists { .. })), "{dup:?}");

    // A template: cloned powered off, then marked.
    let t = c.clone_vm(&src, &folder.path, "tmpl", None, None, false).await?;
    assert_eq!(t.power_state, PowerState::PoweredOff);
    c.mark_as_template(&t.path).await?;
    assert!(c.vm(&t.path).await?.template);

    // Destroy powers off first; destroying again reports absence.
    assert!(c.destroy_vm(&clone.path).await?);
    assert!(!c.destroy_vm(&clone.path).await?);
    assert!(c.destroy_vm(&t.path).await?);
    assert!(c.list_vms(&folder.path).await?.is_empty());
    assert!(c.delete_folder(&folder.path).await?);
    pool.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn privileges_follow_the_roles_and_permissions_set() -> anyhow::Result<()> {
    let sim = start(true).await?;
    let pool = SessionPool::new(fast_options());
    let c = pool.client(&sim.spec()).await?;
    let dc = c.find(ObjectKind::Datacenter, &format!("/{}", source::DATACENTER)).await?;
    let ds = c.find(ObjectKind::Datastore, source::DATASTORE_PATH).await?;
    let folder = c.find(ObjectKind::Folder, source::VM_FOLDER_PATH).await?;

    // The launcher's user holds Admin on the root, so everything, everywhere.
    let all = c.user_privileges(&[dc.moref.clone(), ds.moref.clone(), folder.moref.clone()]).await?;
    assert!(all.defined.iter().any(|p| p == "Datastore.AllocateSpace"), "the server defines its privileges");
    for (obj, held) in &all.entities {
        assert!(held.iter().any(|p| p == "Datastore.AllocateSpace"), "{obj}: {held:?}");
        assert!(held.iter().any(|p| p == "Folder.Create"), "{obj}");
    }

    // Taken away on the datastore: gone there only; the datacenter above keeps it.
    sim.vc.restrict_privileges(source::DATASTORE_PATH, &["Datastore.AllocateSpace", "Datastore.Browse"]).await?;
    let after = c.user_privileges(&[dc.moref.clone(), ds.moref.clone()]).await?;
    let held = |i: usize, p: &str| after.entities[i].1.iter().any(|h| h == p);
    assert_eq!(after.entities[1].0, ds.moref, "answers follow the order asked");
    assert!(!held(1, "Datastore.AllocateSpace") && !held(1, "Datastore.Browse"));
    assert!(held(1, "Datastore.FileManagement"), "the rest of Admin stays");
    assert!(held(0, "Datastore.AllocateSpace"), "the datacenter is not below the datastore");

    // Taken away on the datacenter: what inherits from it (its VM folder) loses it too.
    sim.vc.restrict_privileges(&format!("/{}", source::DATACENTER), &["Folder.Create"]).await?;
    let after = c.user_privileges(&[dc.moref.clone(), folder.moref.clone()]).await?;
    for (obj, held) in &after.entities {
        assert!(!held.iter().any(|p| p == "Folder.Create"), "{obj} inherits the narrower role");
    }
    Ok(())
}
