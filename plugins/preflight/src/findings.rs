//! What the checks found: problems (each saying whether it may clear up by itself) and
//! notes, turned into one outcome.

use vsm_sdk::prelude::*;

/// One thing that stops the migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub text: String,
    /// May clear up without anyone acting (cluster health, a vCenter not answering).
    pub transient: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Findings {
    pub problems: Vec<Problem>,
    /// Worth knowing, not blocking (e.g. "folder will be created").
    pub notes: Vec<String>,
    /// What was checked, for the success message.
    pub checked: Vec<String>,
}

impl Findings {
    /// A problem a person must fix.
    pub fn problem(&mut self, text: impl Into<String>) {
        self.problems.push(Problem { text: text.into(), transient: false });
    }

    /// A problem that may go away by itself.
    pub fn transient(&mut self, text: impl Into<String>) {
        self.problems.push(Problem { text: text.into(), transient: true });
    }

    pub fn note(&mut self, text: impl Into<String>) {
        self.notes.push(text.into());
    }

    pub fn checked(&mut self, text: impl Into<String>) {
        self.checked.push(text.into());
    }

    /// Done with a summary, or failed listing every problem.
    pub fn outcome(self) -> Step {
        if self.problems.is_empty() {
            let mut msg = format!("all checks passed: {}", self.checked.join("; "));
            if !self.notes.is_empty() {
                msg.push_str(&format!(" (note: {})", self.notes.join("; ")));
            }
            return Ok(done(msg));
        }
        let retryable = self.problems.iter().all(|p| p.transient);
        let list: Vec<String> =
            self.problems.iter().enumerate().map(|(i, p)| format!("({}) {}", i + 1, p.text)).collect();
        let message = format!(
            "Preflight found {} problem{}: {}",
            self.problems.len(),
            if self.problems.len() == 1 { "" } else { "s" },
            list.join("; ")
        );
        Err(if retryable { PhaseError::retryable(message) } else { PhaseError::invalid(message) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_is_listed_and_only_transient_ones_are_retryable() {
        let mut f = Findings::default();
        f.transient("node n1 not Ready");
        f.problem("no credentials");
        let e = f.clone().outcome().unwrap_err();
        assert_eq!(e.to_string(), "Preflight found 2 problems: (1) node n1 not Ready; (2) no credentials");
        assert!(!e.is_retryable());
        f.problems.remove(1);
        assert!(f.outcome().unwrap_err().is_retryable());
        let mut ok = Findings::default();
        ok.checked("a");
        ok.note("b");
        assert_eq!(ok.outcome().unwrap(), done("all checks passed: a (note: b)"));
    }
}
