//! Cluster health as the migration judges it: ClusterOperators Available and not
//! Degraded (a configurable set tolerated), Nodes Ready, ClusterVersion not progressing.

use vsm_sdk::Object;

/// Why a cluster is not healthy: one line per problem.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Health {
    pub problems: Vec<String>,
}

impl Health {
    pub fn is_healthy(&self) -> bool {
        self.problems.is_empty()
    }

    /// "a; b; c" (at most `max` items, then "and N more").
    pub fn summary(&self, max: usize) -> String {
        let mut s = self.problems.iter().take(max).cloned().collect::<Vec<_>>().join("; ");
        if self.problems.len() > max {
            s.push_str(&format!("; and {} more", self.problems.len() - max));
        }
        s
    }
}

fn status_of(o: &Object, type_: &str) -> String {
    o.condition(type_).map(|c| c.status).unwrap_or_else(|| "Unknown".into())
}

/// ClusterOperators that are not Available or are Degraded, except the tolerated ones.
pub fn operators(operators: &[Object], tolerated: &[String]) -> Health {
    let mut problems = Vec::new();
    for co in operators {
        let name = co.name();
        if tolerated.iter().any(|t| t == name) {
            continue;
        }
        let (available, degraded) = (status_of(co, "Available"), status_of(co, "Degraded"));
        if available != "True" || degraded == "True" {
            let reason = co
                .condition(if degraded == "True" { "Degraded" } else { "Available" })
                .map(|c| if c.message.is_empty() { c.reason } else { c.message })
                .unwrap_or_default();
            let detail = if reason.is_empty() { String::new() } else { format!(": {reason}") };
            problems.push(format!("operator {name} (available={available}, degraded={degraded}){detail}"));
        }
    }
    Health { problems }
}

/// Nodes whose Ready condition is not True.
pub fn nodes(nodes: &[Object]) -> Health {
    let problems = nodes
        .iter()
        .filter(|n| status_of(n, "Ready") != "True")
        .map(|n| format!("node {} not Ready ({})", n.name(), status_of(n, "Ready")))
        .collect();
    Health { problems }
}

/// The ClusterVersion must not be progressing (an upgrade in flight).
pub fn cluster_version(cv: &Object) -> Health {
    let progressing = status_of(cv, "Progressing");
    let problems = if progressing == "True" {
        let msg = cv.condition("Progressing").map(|c| c.message).unwrap_or_default();
        vec![format!("the cluster version is progressing (an update is in flight): {msg}")]
    } else {
        vec![]
    };
    Health { problems }
}

impl std::ops::Add for Health {
    type Output = Health;
    fn add(mut self, other: Health) -> Health {
        self.problems.extend(other.problems);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn co(name: &str, available: &str, degraded: &str) -> Object {
        Object(json!({"metadata": {"name": name}, "status": {"conditions": [
            {"type": "Available", "status": available}, {"type": "Degraded", "status": degraded, "message": "pods restarting"}
        ]}}))
    }

    #[test]
    fn unavailable_or_degraded_operators_are_reported_unless_tolerated() {
        let list = [
            co("a", "True", "False"),
            co("b", "False", "False"),
            co("c", "True", "True"),
            co("machine-config", "False", "True"),
        ];
        let h = operators(&list, &["machine-config".to_string()]);
        assert_eq!(h.problems.len(), 2);
        assert!(h.problems[1].contains("operator c (available=True, degraded=True): pods restarting"));
        assert!(operators(&[co("x", "True", "False")], &[]).is_healthy());
        let missing = Object(json!({"metadata": {"name": "new"}}));
        assert!(!operators(&[missing], &[]).is_healthy(), "no conditions yet is not healthy");
    }

    #[test]
    fn nodes_and_summary() {
        let ready = Object(
            json!({"metadata": {"name": "n1"}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
        );
        let not = Object(
            json!({"metadata": {"name": "n2"}, "status": {"conditions": [{"type": "Ready", "status": "False"}]}}),
        );
        let h = nodes(&[ready, not]) + Health { problems: vec!["x".into(), "y".into()] };
        assert_eq!(h.summary(2), "node n2 not Ready (False); x; and 1 more");
    }
}
