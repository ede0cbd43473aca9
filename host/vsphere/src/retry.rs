//! When to try again: the retry policy (exponential backoff with jitter, bounded by
//! attempts and total delay) and which HTTP statuses are worth retrying.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

use crate::error::VsphereError;

/// Exponential backoff with jitter, bounded by attempts and by total delay.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Total tries of one request, the first included (1 = never retry).
    pub max_attempts: u32,
    pub min_delay: Duration,
    pub max_delay: Duration,
    /// Upper bound on the sum of all delays.
    pub max_total_delay: Duration,
    pub jitter: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            min_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(10),
            max_total_delay: Duration::from_secs(60),
            jitter: true,
        }
    }
}

impl RetryPolicy {
    /// Never retry.
    pub fn none() -> Self {
        RetryPolicy { max_attempts: 1, ..Default::default() }
    }

    /// The delays between attempts (at most `max_attempts - 1` of them).
    pub fn delays(&self) -> impl Iterator<Item = Duration> + use<> {
        let mut b = ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.max_attempts.saturating_sub(1) as usize)
            .with_total_delay(Some(self.max_total_delay));
        if self.jitter {
            b = b.with_jitter();
        }
        b.build()
    }
}

/// HTTP status without a usable body: 5xx and 429 are worth retrying, the rest is not.
pub(crate) fn classify_status(status: u16, operation: &str, body_hint: &str) -> VsphereError {
    let hint: String = body_hint.chars().take(200).collect();
    if status >= 500 || status == 429 {
        VsphereError::Transient {
            operation: operation.to_string(),
            attempts: 1,
            reason: format!("HTTP {status}: {hint}"),
        }
    } else {
        VsphereError::protocol(format!("{operation}: unexpected HTTP {status}: {hint}"))
    }
}

/// The whole source chain on one line (reqwest's Display shows only the top).
pub(crate) fn chain(err: &dyn std::error::Error) -> String {
    let mut s = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let m = e.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = e.source();
    }
    s
}

/// Record how many attempts a failure took (for the final error message).
pub(crate) fn with_attempts(err: VsphereError, n: u32) -> VsphereError {
    match err {
        VsphereError::Transient { operation, reason, .. } => VsphereError::Transient { operation, attempts: n, reason },
        e => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_are_bounded() {
        let p = RetryPolicy {
            max_attempts: 4,
            min_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(40),
            max_total_delay: Duration::from_secs(10),
            jitter: false,
        };
        // backon computes in floating point: compare in whole milliseconds.
        let d: Vec<u128> = p.delays().map(|d| (d.as_micros() + 500) / 1000).collect();
        assert_eq!(d, vec![10, 20, 40]);
        assert_eq!(RetryPolicy::none().delays().count(), 0);
        let jittered: Vec<_> = RetryPolicy { jitter: true, ..p.clone() }.delays().collect();
        assert_eq!(jittered.len(), 3);
        assert!(jittered.iter().all(|d| *d >= Duration::from_millis(9) && *d <= Duration::from_millis(81)));
        let capped = RetryPolicy { max_attempts: 100, max_total_delay: Duration::from_millis(50), ..p };
        let total: Duration = capped.delays().sum();
        assert!(total <= Duration::from_millis(51), "{total:?}");
    }

    #[test]
    fn status_classification() {
        assert!(classify_status(503, "op", "").is_transient());
        assert!(classify_status(502, "op", "").is_transient());
        assert!(classify_status(429, "op", "").is_transient());
        assert!(!classify_status(400, "op", "").is_transient());
        assert!(!classify_status(404, "op", "").is_transient());
    }

    #[test]
    fn attempts_recorded() {
        let e = VsphereError::Transient { operation: "o".into(), attempts: 1, reason: "r".into() };
        assert!(matches!(with_attempts(e, 5), VsphereError::Transient { attempts: 5, .. }));
        let e = VsphereError::not_found("x");
        assert!(matches!(with_attempts(e, 5), VsphereError::NotFound { .. }));
    }
}
