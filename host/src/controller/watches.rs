//! What the controller watches: the kinds the loaded phases may read. A phase's waits end
//! on watch events of what it reads, so a vendor's phase (or a replaced shipped one) is
//! woken by the kinds it reads exactly as a shipped one is, with nothing to register.
//!
//! The rule: every kind a loaded plugin may `list` (a phase observes a population it waits
//! on), or may `get` and change (a phase waits for what it changed to converge: the CPMS it
//! deleted to be regenerated, the Deployment it scaled), as declared in `describe()` and
//! granted by the plugin configuration, in the namespace its capability names (or in all
//! namespaces), metadata only. Secrets and ConfigMaps are never watched: they are
//! configuration, no phase waits on them, and the operator holds no watch on them. A
//! capability with a wildcard resource names no kind to watch.

use std::collections::{BTreeMap, BTreeSet};

use kube::core::ApiResource;

use crate::runtime::capability::Effective;

/// One kind to watch, in one namespace or all (None).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Watch {
    pub group: String,
    pub resource: String,
    pub namespace: Option<String>,
}

/// Whether `caps` lets its phase read `verb` (or any verb: `*`) on the rule's kind.
fn may(caps: &Effective, rule: &crate::runtime::capability::KubeRule, verb: &str, ns: Option<&str>) -> bool {
    rule.verbs.iter().any(|v| v == verb || v == "*") && caps.allows_kube(&rule.group, &rule.resource, verb, ns)
}

/// Verbs that change an object.
const CHANGES: [&str; 4] = ["create", "update", "patch", "delete"];

/// The watches the capabilities of `plugins` call for.
pub fn watches<'a>(plugins: impl IntoIterator<Item = &'a Effective>) -> BTreeSet<Watch> {
    let mut out = BTreeSet::new();
    for caps in plugins {
        for rule in &caps.declared.kube {
            let concrete = !rule.resource.contains('*') && !rule.group.contains('*');
            let configuration = rule.group.is_empty() && matches!(rule.resource.as_str(), "secrets" | "configmaps");
            let namespace = rule.namespace.as_deref().filter(|n| *n != "*");
            let lists = may(caps, rule, "list", namespace);
            let follows =
                may(caps, rule, "get", namespace) && CHANGES.iter().any(|verb| may(caps, rule, verb, namespace));
            if concrete && !configuration && (lists || follows) {
                out.insert(Watch {
                    group: rule.group.clone(),
                    resource: rule.resource.clone(),
                    namespace: namespace.map(str::to_string),
                });
            }
        }
    }
    // A watch of all namespaces covers the same kind in one namespace.
    let everywhere: BTreeSet<(String, String)> =
        out.iter().filter(|w| w.namespace.is_none()).map(|w| (w.group.clone(), w.resource.clone())).collect();
    out.retain(|w| w.namespace.is_none() || !everywhere.contains(&(w.group.clone(), w.resource.clone())));
    out
}

/// Each watch with its API resource, from discovery (one request per API group); kinds the
/// cluster does not serve are left out and logged.
pub async fn resolve(client: &kube::Client, wanted: &BTreeSet<Watch>) -> Vec<(ApiResource, Option<String>)> {
    let mut groups: BTreeMap<&str, Vec<ApiResource>> = BTreeMap::new();
    for group in wanted.iter().map(|w| w.group.as_str()).collect::<BTreeSet<_>>() {
        match kube::discovery::group(client, group).await {
            Ok(g) => {
                // Every version's kinds (Machines are v1beta1 where the CPMS is v1), the most
                // stable version of each.
                groups.insert(group, g.resources_by_stability().into_iter().map(|(ar, _)| ar).collect());
            }
            Err(error) => tracing::debug!(group, %error, "API group not served: its kinds are not watched"),
        }
    }
    wanted
        .iter()
        .filter_map(|w| {
            let ar = groups.get(w.group.as_str())?.iter().find(|ar| ar.plural == w.resource)?;
            Some((ar.clone(), w.namespace.clone()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::capability::{CapabilitySet, KubeRule};

    fn mk_rule(group: &str, resource: &str, verbs: &[&str], namespace: Option<&str>) -> KubeRule {
        KubeRule {
            group: group.into(),
            resource: resource.into(),
            verbs: verbs.iter().map(|v| v.to_string()).collect(),
            namespace: namespace.map(Into::into),
        }
    }

    fn mk_caps(declared: Vec<KubeRule>, granted: Vec<KubeRule>) -> Effective {
        Effective {
            declared: CapabilitySet { kube: declared, vsphere: vec![] },
            granted: CapabilitySet { kube: granted, vsphere: vec![] },
        }
    }

    fn mk_watch(group: &str, resource: &str, namespace: Option<&str>) -> Watch {
        Watch { group: group.into(), resource: resource.into(), namespace: namespace.map(Into::into) }
    }

    #[test]
    fn kinds_a_phase_reads_are_watched_where_it_reads_them() {
        let rules = vec![
            mk_rule("machine.openshift.io", "machines", &["list"], Some("openshift-machine-api")),
            mk_rule("apps", "deployments", &["get", "patch"], Some("openshift-cluster-version")),
            mk_rule("", "nodes", &["list"], None),
            mk_rule("config.openshift.io", "clusterversions", &["get"], None),
        ];
        let caps = mk_caps(rules.clone(), rules);
        assert_eq!(
            watches([&caps]),
            BTreeSet::from([
                mk_watch("", "nodes", None),
                mk_watch("apps", "deployments", Some("openshift-cluster-version")),
                mk_watch("machine.openshift.io", "machines", Some("openshift-machine-api")),
            ])
        );
    }

    #[test]
    fn writes_configuration_wildcards_and_ungranted_reads_are_not_watched() {
        let declared = vec![
            mk_rule("", "configmaps", &["get", "update"], Some("a")),
            mk_rule("", "secrets", &["list"], Some("kube-system")),
            mk_rule("", "*", &["list"], None),
            mk_rule("example.com", "widgets", &["list"], None),
        ];
        let granted = declared[..3].to_vec();
        assert!(watches([&mk_caps(declared, granted)]).is_empty());
    }

    #[test]
    fn one_watch_of_all_namespaces_covers_the_namespaced_ones() {
        let a =
            mk_caps(vec![mk_rule("", "pods", &["list"], Some("x"))], vec![mk_rule("", "pods", &["list"], Some("x"))]);
        let b = mk_caps(vec![mk_rule("", "pods", &["list"], None)], vec![mk_rule("", "pods", &["*"], None)]);
        assert_eq!(watches([&a]), BTreeSet::from([mk_watch("", "pods", Some("x"))]));
        assert_eq!(watches([&a, &b]), BTreeSet::from([mk_watch("", "pods", None)]));
    }
}
