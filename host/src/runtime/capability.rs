//! Capabilities: what a plugin declared, what the operator granted, and the check every
//! import makes. A call is allowed only if both the declaration and the grant allow it.

use serde::{Deserialize, Serialize};

use super::bindings::{Capabilities, KubeCapability, VsphereCapability};

/// One Kubernetes permission in a grant (same shape as a declared capability; `*` allowed
/// for group, resource and verbs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubeRule {
    #[serde(default)]
    pub group: String,
    pub resource: String,
    pub verbs: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// A class of vSphere operations, as written in the plugin configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VsphereClass {
    ReadInventory,
    ManageFolders,
    ManageTags,
}

impl From<VsphereCapability> for VsphereClass {
    fn from(c: VsphereCapability) -> Self {
        match c {
            VsphereCapability::ReadInventory => VsphereClass::ReadInventory,
            VsphereCapability::ManageFolders => VsphereClass::ManageFolders,
            VsphereCapability::ManageTags => VsphereClass::ManageTags,
        }
    }
}

/// A set of permissions: what a plugin declared, or what the operator granted it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapabilitySet {
    #[serde(default)]
    pub kube: Vec<KubeRule>,
    #[serde(default)]
    pub vsphere: Vec<VsphereClass>,
}

impl From<&Capabilities> for CapabilitySet {
    fn from(c: &Capabilities) -> Self {
        CapabilitySet {
            kube: c.kube.iter().map(KubeRule::from).collect(),
            vsphere: c.vsphere.iter().map(|v| VsphereClass::from(*v)).collect(),
        }
    }
}

impl From<&KubeCapability> for KubeRule {
    fn from(c: &KubeCapability) -> Self {
        KubeRule {
            group: c.group.clone(),
            resource: c.resource.clone(),
            verbs: c.verbs.clone(),
            namespace: c.namespace.clone(),
        }
    }
}

fn matches(pattern: &str, value: &str) -> bool {
    pattern == "*" || pattern == value
}

impl KubeRule {
    /// Whether this rule allows `verb` on `group/resource` in `namespace` (None: cluster
    /// scope or all namespaces, which only a rule without a namespace allows).
    pub fn allows(&self, group: &str, resource: &str, verb: &str, namespace: Option<&str>) -> bool {
        matches(&self.group, group)
            && matches(&self.resource, resource)
            && self.verbs.iter().any(|v| matches(v, verb))
            && match (&self.namespace, namespace) {
                (None, _) => true,
                (Some(allowed), Some(ns)) => allowed == ns,
                (Some(_), None) => false,
            }
    }
}

impl CapabilitySet {
    pub fn allows_kube(&self, group: &str, resource: &str, verb: &str, namespace: Option<&str>) -> bool {
        self.kube.iter().any(|r| r.allows(group, resource, verb, namespace))
    }

    pub fn allows_vsphere(&self, class: VsphereClass) -> bool {
        self.vsphere.contains(&class)
    }

    /// Declared permissions the grant does not cover, for the registry's status.
    pub fn not_covered_by(&self, grant: &CapabilitySet) -> Vec<String> {
        let mut missing = Vec::new();
        for rule in &self.kube {
            for verb in &rule.verbs {
                if !grant.allows_kube(&rule.group, &rule.resource, verb, rule.namespace.as_deref()) {
                    let group = if rule.group.is_empty() { "core" } else { &rule.group };
                    let scope = rule.namespace.as_deref().map(|n| format!(" in {n}")).unwrap_or_default();
                    missing.push(format!("{verb} {group}/{}{scope}", rule.resource));
                }
            }
        }
        for class in &self.vsphere {
            if !grant.allows_vsphere(*class) {
                missing.push(format!(
                    "vsphere {}",
                    serde_json::to_value(class).unwrap_or_default().as_str().unwrap_or("?")
                ));
            }
        }
        missing
    }
}

/// What a loaded plugin may do: its declaration intersected with its grant.
#[derive(Debug, Clone, Default)]
pub struct Effective {
    pub declared: CapabilitySet,
    pub granted: CapabilitySet,
}

impl Effective {
    pub fn allows_kube(&self, group: &str, resource: &str, verb: &str, namespace: Option<&str>) -> bool {
        self.declared.allows_kube(group, resource, verb, namespace)
            && self.granted.allows_kube(group, resource, verb, namespace)
    }

    pub fn allows_vsphere(&self, class: VsphereClass) -> bool {
        self.declared.allows_vsphere(class) && self.granted.allows_vsphere(class)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(group: &str, resource: &str, verbs: &[&str], ns: Option<&str>) -> KubeRule {
        KubeRule {
            group: group.into(),
            resource: resource.into(),
            verbs: verbs.iter().map(|v| v.to_string()).collect(),
            namespace: ns.map(Into::into),
        }
    }

    #[test]
    fn namespaced_rule_never_allows_cluster_wide_calls() {
        let r = rule("", "secrets", &["get"], Some("kube-system"));
        assert!(r.allows("", "secrets", "get", Some("kube-system")));
        assert!(!r.allows("", "secrets", "get", Some("default")));
        assert!(!r.allows("", "secrets", "get", None));
        assert!(!r.allows("", "secrets", "list", Some("kube-system")));
        assert!(!r.allows("", "configmaps", "get", Some("kube-system")));
    }

    #[test]
    fn wildcards_match_anything_but_only_where_written() {
        let r = rule("machine.openshift.io", "*", &["*"], None);
        assert!(r.allows("machine.openshift.io", "machinesets", "delete", Some("x")));
        assert!(!r.allows("", "machinesets", "delete", Some("x")));
    }

    #[test]
    fn effective_needs_both_declaration_and_grant() {
        let declared = CapabilitySet {
            kube: vec![rule("", "secrets", &["get", "update"], Some("kube-system"))],
            vsphere: vec![VsphereClass::ManageTags],
        };
        let granted = CapabilitySet {
            kube: vec![rule("", "secrets", &["get"], None)],
            vsphere: vec![VsphereClass::ManageTags, VsphereClass::ManageFolders],
        };
        let e = Effective { declared: declared.clone(), granted: granted.clone() };
        assert!(e.allows_kube("", "secrets", "get", Some("kube-system")));
        assert!(!e.allows_kube("", "secrets", "update", Some("kube-system")), "declared but not granted");
        assert!(!e.allows_kube("", "secrets", "get", Some("default")), "granted but not declared");
        assert!(e.allows_vsphere(VsphereClass::ManageTags));
        assert!(!e.allows_vsphere(VsphereClass::ManageFolders), "granted but not declared");
        assert_eq!(declared.not_covered_by(&granted), vec!["update core/secrets in kube-system".to_string()]);
    }
}
