//! One error type for phase code, so `?` works on every host call.

use std::fmt;

use crate::bindings::vsm::phase::backup::BackupError;
use crate::bindings::vsm::phase::state::StateError;
use crate::{Failure, KubeError, Outcome, VsphereError};

/// Why a phase step could not complete. Converted into a failed [`Outcome`] by the export
/// glue: transient problems are retryable, everything else is not.
#[derive(Debug, Clone, PartialEq)]
pub enum PhaseError {
    Kube {
        context: Option<String>,
        error: KubeError,
    },
    Vsphere {
        context: Option<String>,
        error: VsphereError,
    },
    State(String),
    Backup(String),
    /// The spec or the cluster is not what the phase needs; retrying will not help.
    Invalid(String),
    /// Anything else, with an explicit retry decision.
    Failed {
        message: String,
        retryable: bool,
    },
}

impl PhaseError {
    /// A non-retryable failure with this message.
    pub fn invalid(message: impl Into<String>) -> Self {
        PhaseError::Invalid(message.into())
    }

    /// A failure the host should retry (with backoff, until the phase deadline).
    pub fn retryable(message: impl Into<String>) -> Self {
        PhaseError::Failed { message: message.into(), retryable: true }
    }

    /// Whether retrying the step may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            PhaseError::Kube { error, .. } => {
                matches!(error, KubeError::Transient(_) | KubeError::Conflict(_))
            }
            PhaseError::Vsphere { error, .. } => {
                matches!(error, VsphereError::Transient(_) | VsphereError::Timeout(_))
            }
            PhaseError::State(_) => true,
            PhaseError::Backup(_) | PhaseError::Invalid(_) => false,
            PhaseError::Failed { retryable, .. } => *retryable,
        }
    }

    /// True when the error is a Kubernetes or vSphere "not found".
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            PhaseError::Kube { error: KubeError::NotFound(_), .. }
                | PhaseError::Vsphere { error: VsphereError::NotFound(_), .. }
        )
    }

    /// Prefix the message with what the phase was doing.
    pub fn context(self, what: impl Into<String>) -> Self {
        let what = what.into();
        match self {
            PhaseError::Kube { error, .. } => PhaseError::Kube { context: Some(what), error },
            PhaseError::Vsphere { error, .. } => PhaseError::Vsphere { context: Some(what), error },
            PhaseError::State(m) => PhaseError::State(format!("{what}: {m}")),
            PhaseError::Backup(m) => PhaseError::Backup(format!("{what}: {m}")),
            PhaseError::Invalid(m) => PhaseError::Invalid(format!("{what}: {m}")),
            PhaseError::Failed { message, retryable } => {
                PhaseError::Failed { message: format!("{what}: {message}"), retryable }
            }
        }
    }

    /// The failed outcome the host receives.
    pub fn into_outcome(self) -> Outcome {
        let retryable = self.is_retryable();
        Outcome::Failed(Failure { message: self.to_string(), retryable })
    }
}

fn kube_message(e: &KubeError) -> String {
    match e {
        KubeError::NotFound(m) => format!("not found: {m}"),
        KubeError::AlreadyExists(m) => format!("already exists: {m}"),
        KubeError::Conflict(m) => format!("conflict: {m}"),
        KubeError::Forbidden(m) => format!("forbidden: {m}"),
        KubeError::Invalid(m) => format!("rejected by the API server: {m}"),
        KubeError::Transient(m) => format!("temporary API problem: {m}"),
    }
}

fn vsphere_message(e: &VsphereError) -> String {
    match e {
        VsphereError::NotFound(m) => format!("not found: {m}"),
        VsphereError::AlreadyExists(m) => format!("already exists: {m}"),
        VsphereError::PermissionDenied(m) => format!("permission denied: {m}"),
        VsphereError::AuthFailed(m) => format!("login failed: {m}"),
        VsphereError::Transient(m) => format!("temporary vCenter problem: {m}"),
        VsphereError::Timeout(m) => format!("timed out: {m}"),
        VsphereError::Tls(m) => format!("TLS: {m}"),
        VsphereError::Forbidden(m) => format!("forbidden: {m}"),
        VsphereError::Invalid(m) => format!("rejected by vCenter: {m}"),
    }
}

impl fmt::Display for PhaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (context, message) = match self {
            PhaseError::Kube { context, error } => (context, kube_message(error)),
            PhaseError::Vsphere { context, error } => (context, vsphere_message(error)),
            PhaseError::State(m) => (&None, format!("state store: {m}")),
            PhaseError::Backup(m) => (&None, format!("backup: {m}")),
            PhaseError::Invalid(m) => (&None, m.clone()),
            PhaseError::Failed { message, .. } => (&None, message.clone()),
        };
        match context {
            Some(c) => write!(f, "{c}: {message}"),
            None => f.write_str(&message),
        }
    }
}

impl std::error::Error for PhaseError {}

impl From<KubeError> for PhaseError {
    fn from(error: KubeError) -> Self {
        PhaseError::Kube { context: None, error }
    }
}

impl From<VsphereError> for PhaseError {
    fn from(error: VsphereError) -> Self {
        PhaseError::Vsphere { context: None, error }
    }
}

impl From<StateError> for PhaseError {
    fn from(error: StateError) -> Self {
        match error {
            StateError::TooLarge(m) => PhaseError::Invalid(format!("state value too large: {m}")),
            StateError::Unavailable(m) => PhaseError::State(m),
        }
    }
}

impl From<BackupError> for PhaseError {
    fn from(error: BackupError) -> Self {
        PhaseError::Backup(match error {
            BackupError::NotFound(m) => format!("not found: {m}"),
            BackupError::TooLarge(m) => format!("too large: {m}"),
            BackupError::Corrupt(m) => format!("corrupt: {m}"),
            BackupError::Forbidden(m) => format!("forbidden: {m}"),
            BackupError::Failed(m) => m,
        })
    }
}

impl From<serde_json::Error> for PhaseError {
    fn from(error: serde_json::Error) -> Self {
        PhaseError::Invalid(format!("malformed JSON: {error}"))
    }
}

/// `.context("reading the Infrastructure")` on any result whose error becomes a
/// [`PhaseError`].
pub trait ResultExt<T> {
    fn context(self, what: impl Into<String>) -> Result<T, PhaseError>;
}

impl<T, E: Into<PhaseError>> ResultExt<T> for Result<T, E> {
    fn context(self, what: impl Into<String>) -> Result<T, PhaseError> {
        self.map_err(|e| e.into().context(what))
    }
}
