//! Which MachineSets a migration replaces, and with what. CreateWorkers makes this plan at
//! its first call and records it ([`MACHINE_SET_REPLACEMENTS`]); ScaleOldMachines,
//! Cleanup and Verify read the recorded plan rather than match the cluster again, and
//! Preflight makes the same plan to refuse a spec that leaves a set without a destination
//! before anything changes.
//!
//! 1. The sources: every MachineSet whose provider spec puts machines in a source vCenter,
//!    whatever its role (worker, infra, custom); a set being deleted is left out.
//! 2. The source failure domain of each ([`domain_of`]): the Infrastructure failure
//!    domain on the set's server and datacenter whose compute cluster holds the set's
//!    resource pool (the datastore decides between domains sharing a cluster); none on a
//!    legacy cluster.
//! 3. Its destination: [`MigrationSpec::destination`] (override, failure-domain map,
//!    default), every unplaced set named in one error.
//! 4. The replacement's name: the override's; else the source name with a suffix that
//!    names the source failure domain (or its zone) replaced by the target domain's name;
//!    else `<source>-<target domain>`. Checked as a MachineSet name and label value, and
//!    unique among the replacements and the sources.
//! 5. Its replicas: the override's, else the source set's `spec.replicas`.
//!
//! [`MACHINE_SET_REPLACEMENTS`]: crate::shared_state::MACHINE_SET_REPLACEMENTS

use serde::{Deserialize, Serialize};
use serde_json::Value;
use vsm_sdk::Object;
use vsm_sdk::spec::MigrationSpec;

use crate::machines::{self, SET_PROVIDER_SPEC};

/// One source MachineSet and the set that replaces it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Replacement {
    /// The source MachineSet.
    pub source: String,
    /// The source failure domain it runs in (None on a legacy cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_domain: Option<String>,
    /// The new MachineSet.
    pub name: String,
    /// The target failure domain (a name in `spec.failureDomains`).
    pub failure_domain: String,
    /// The target vCenter.
    pub server: String,
    pub replicas: i64,
}

fn ws<'a>(spec: &'a Value, key: &str) -> &'a str {
    spec.pointer(&format!("/workspace/{key}")).and_then(Value::as_str).unwrap_or_default()
}

fn topo<'a>(fd: &'a Value, key: &str) -> &'a str {
    fd.pointer(&format!("/topology/{key}")).and_then(Value::as_str).unwrap_or_default()
}

/// The failure domain (of `domains`, shaped as the Infrastructure stores them) a provider
/// spec runs in: same server and datacenter, resource pool inside the domain's compute cluster; of
/// several such domains, the one with the same datastore. None when no domain matches or
/// the choice stays ambiguous.
pub fn domain_of(provider_spec: &Value, domains: &[Value]) -> Option<String> {
    let (server, dc, pool) =
        (ws(provider_spec, "server"), ws(provider_spec, "datacenter"), ws(provider_spec, "resourcePool"));
    let in_cluster = |fd: &&Value| {
        let cluster = topo(fd, "computeCluster");
        !cluster.is_empty() && (pool == cluster || pool.starts_with(&format!("{cluster}/")))
    };
    let candidates: Vec<&Value> = domains
        .iter()
        .filter(|fd| fd.get("server").and_then(Value::as_str) == Some(server) && topo(fd, "datacenter") == dc)
        .filter(in_cluster)
        .collect();
    let pick = match candidates.as_slice() {
        [one] => Some(*one),
        many => {
            let ds = ws(provider_spec, "datastore");
            let same: Vec<&&Value> = many.iter().filter(|fd| topo(fd, "datastore") == ds).collect();
            (same.len() == 1).then(|| *same[0])
        }
    };
    pick.and_then(|fd| fd.get("name")).and_then(Value::as_str).map(String::from)
}

/// The name of a replacement in `target` for `source` (see the module doc, step 4).
pub fn replacement_name(source: &str, source_domain: Option<&str>, source_zone: Option<&str>, target: &str) -> String {
    for suffix in [source_domain, source_zone].into_iter().flatten().filter(|s| !s.is_empty()) {
        if let Some(stem) = source.strip_suffix(&format!("-{suffix}")) {
            return format!("{stem}-{target}");
        }
    }
    format!("{source}-{target}")
}

/// The plan: every source MachineSet with its replacement. `infra_domains` are the
/// Infrastructure's `failureDomains` as stored; `sources` the source vCenters. Err lists
/// every problem at once, each naming the set and the spec field.
pub fn plan(
    sets: &[Object],
    infra_domains: &[Value],
    spec: &MigrationSpec,
    sources: &[String],
) -> Result<Vec<Replacement>, String> {
    let mut sorted: Vec<&Object> = sets
        .iter()
        .filter(|s| !s.is_deleting() && sources.iter().any(|src| src == machines::machine_set_server(s)))
        .collect();
    sorted.sort_by(|a, b| a.name().cmp(b.name()));
    let mut problems = Vec::new();
    for o in &spec.machine_set_config.overrides {
        if !sorted.iter().any(|s| s.name() == o.machine_set) {
            problems.push(format!(
                "spec.machineSetConfig.overrides[{}]: no MachineSet {} puts machines in the source vCenter(s) {}",
                o.machine_set,
                o.machine_set,
                sources.join(", ")
            ));
        }
    }
    let mut plan: Vec<Replacement> = Vec::new();
    for set in &sorted {
        let provider = set.at(SET_PROVIDER_SPEC).cloned().unwrap_or(Value::Null);
        let domain = domain_of(&provider, infra_domains);
        let dest = match spec.destination(set.name(), domain.as_deref()) {
            Ok(d) => d,
            Err(e) => {
                problems.push(e);
                continue;
            }
        };
        let zone = domain
            .as_deref()
            .and_then(|d| infra_domains.iter().find(|fd| fd.get("name").and_then(Value::as_str) == Some(d)))
            .and_then(|fd| fd.get("zone"))
            .and_then(Value::as_str);
        let fd = dest.failure_domain;
        let name = match dest.name {
            Some(n) => n.to_string(),
            None => replacement_name(set.name(), domain.as_deref(), zone, &fd.name),
        };
        if let Err(e) = machines::check_set_name(&name) {
            problems.push(format!(
                "MachineSet {} ({}): {e}: name it in spec.machineSetConfig.overrides",
                set.name(),
                dest.decided_by
            ));
            continue;
        }
        let replicas = dest.replicas.map(i64::from).unwrap_or_else(|| set.i64_at("/spec/replicas").unwrap_or(0).max(0));
        plan.push(Replacement {
            source: set.name().to_string(),
            source_domain: domain,
            name,
            failure_domain: fd.name.clone(),
            server: fd.server.clone(),
            replicas,
        });
    }
    for r in &plan {
        if plan.iter().filter(|o| o.name == r.name).count() > 1 {
            let who: Vec<&str> = plan.iter().filter(|o| o.name == r.name).map(|o| o.source.as_str()).collect();
            let problem = format!(
                "MachineSets {} would all be replaced by {}: name them apart in spec.machineSetConfig.overrides",
                who.join(" and "),
                r.name
            );
            if !problems.contains(&problem) {
                problems.push(problem);
            }
        } else if sorted.iter().any(|s| s.name() == r.name) {
            problems.push(format!(
                "the replacement of MachineSet {} would be named {}, the name of a source set: name it in spec.machineSetConfig.overrides",
                r.source, r.name
            ));
        }
    }
    if problems.is_empty() { Ok(plan) } else { Err(problems.join("; ")) }
}

/// Every `spec.machineSetConfig.failureDomainMap[].source` that is not a failure domain
/// of the Infrastructure, as one message (None when all are).
pub fn unknown_map_sources(spec: &MigrationSpec, infra_domains: &[Value]) -> Option<String> {
    let known: Vec<&str> = infra_domains.iter().filter_map(|fd| fd.get("name").and_then(Value::as_str)).collect();
    let unknown: Vec<&str> = spec
        .machine_set_config
        .failure_domain_map
        .iter()
        .map(|m| m.source.as_str())
        .filter(|s| !known.contains(s))
        .collect();
    (!unknown.is_empty()).then(|| {
        format!(
            "spec.machineSetConfig.failureDomainMap names source failure domain(s) {} that the Infrastructure does not define (it has: {})",
            unknown.join(", "),
            if known.is_empty() { "none".to_string() } else { known.join(", ") }
        )
    })
}

#[cfg(test)]
mod tests;
