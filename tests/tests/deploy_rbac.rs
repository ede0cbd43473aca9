//! `deploy/rbac.yaml` is exactly what the operator needs: every permission derived from the
//! host's own needs and from the shipped components' capabilities (as granted by
//! `deploy/plugin-config.yaml`) is granted, and nothing else. And the plugin configuration
//! grants each component no more than it declares.
//!
//! Needs the components (`cargo xtask plugins`), not the test environment.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Result, ensure};
use vsm_host::runtime::config::PluginEntry;
use vsm_testenv::deploy::{self, Access, covers};
use vsm_testenv::harness::plugin_dir;

fn show(a: &Access) -> String {
    let group = if a.group.is_empty() { "core" } else { &a.group };
    let scope = a.namespace.as_deref().map(|n| format!(" in {n}")).unwrap_or_else(|| " cluster-wide".into());
    let name = a.name.as_deref().map(|n| format!(" ({n})")).unwrap_or_default();
    format!("{} {group}/{}{name}{scope}", a.verb, a.resource)
}

#[tokio::test]
async fn the_rbac_grants_exactly_what_the_host_and_the_shipped_phases_use() -> Result<()> {
    let required = deploy::required(&plugin_dir()).await?;
    let granted = deploy::granted()?;

    let missing: Vec<String> = required
        .iter()
        .filter(|(a, _)| !granted.contains(*a))
        .map(|(a, why)| format!("{} — {}", show(a), why.iter().cloned().collect::<Vec<_>>().join("; ")))
        .collect();
    let excess: Vec<String> = granted.iter().filter(|a| !required.contains_key(*a)).map(show).collect();
    assert!(missing.is_empty(), "deploy/rbac.yaml lacks:\n  {}", missing.join("\n  "));
    assert!(excess.is_empty(), "deploy/rbac.yaml grants what nothing uses:\n  {}", excess.join("\n  "));

    // No rule is implied by another (a namespaced copy of a cluster-wide one, or a named
    // copy of an unnamed one).
    let redundant: Vec<String> =
        granted.iter().filter(|a| granted.iter().any(|b| b != *a && covers(b, a))).map(show).collect();
    assert!(redundant.is_empty(), "redundant rules: {redundant:?}");
    Ok(())
}

#[test]
fn the_derivation_names_singletons_and_knows_the_restore_verbs() {
    // A phase that deletes the CPMS and has a rollback needs to create and update it again;
    // one that only updates the cloud config needs get (journal) and update, by name.
    let needs = deploy::host_needs();
    assert!(
        needs.iter().any(|(a, _)| a.resource == "vspheremigrations/finalizers" && a.verb == "update"),
        "owner references with blockOwnerDeletion need the finalizers subresource"
    );
    let lease = needs.iter().find(|(a, _)| a.resource == "leases" && a.verb == "update").unwrap();
    assert_eq!(lease.0.name.as_deref(), Some("vsphere-migration-operator"));
    let create = needs.iter().find(|(a, _)| a.resource == "leases" && a.verb == "create").unwrap();
    assert_eq!(create.0.name, None, "create cannot be restricted by name");
}

#[tokio::test]
async fn the_plugin_configuration_grants_no_more_than_each_component_declares() -> Result<()> {
    let config = deploy::plugin_config()?;
    let runtime = vsm_host::runtime::Runtime::new(Default::default())?;
    let registry = vsm_host::runtime::Registry::open(runtime, plugin_dir(), config.clone()).await?;
    let status = registry.status();
    let components: BTreeSet<String> = status.iter().map(|s| s.component.clone()).collect();
    let configured: BTreeSet<String> = config.plugins.keys().cloned().collect();
    assert_eq!(components, configured, "every shipped component has an entry, and only those");

    for p in registry.loaded() {
        let entry: PluginEntry = config.entry(&p.component);
        ensure!(!entry.grant_declared, "{}: explicit grants only (grantDeclared hides what is granted)", p.component);
        for rule in &entry.grants.kube {
            for verb in &rule.verbs {
                ensure!(
                    p.caps.declared.allows_kube(&rule.group, &rule.resource, verb, rule.namespace.as_deref()),
                    "{} is granted {verb} {}/{} in {:?}, which it does not declare",
                    p.component,
                    rule.group,
                    rule.resource,
                    rule.namespace
                );
            }
        }
        for class in &entry.grants.vsphere {
            ensure!(p.caps.declared.allows_vsphere(*class), "{} is granted vsphere {class:?} undeclared", p.component);
        }
    }

    // What is declared but deliberately not granted: reading Secrets in every namespace.
    let not_granted: BTreeMap<String, Vec<String>> = status
        .iter()
        .filter(|s| !s.not_granted.is_empty())
        .map(|s| (s.component.clone(), s.not_granted.clone()))
        .collect();
    let expected: BTreeMap<String, Vec<String>> = ["cleanup", "preflight", "update-config", "update-secrets"]
        .into_iter()
        .map(|c| (c.to_string(), vec!["get core/secrets".to_string()]))
        .collect();
    assert_eq!(not_granted, expected, "declared capabilities the configuration leaves out");
    Ok(())
}
