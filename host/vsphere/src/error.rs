//! Typed errors that phases can act on.

use std::time::Duration;

/// Every failure of the vSphere client.
///
/// Phases branch on the variant (not-found → create, already-exists → re-read,
/// transient → wait and retry), so messages never need parsing.
#[derive(Debug, Clone, thiserror::Error)]
pub enum VsphereError {
    /// The inventory path, moref, tag or category does not exist.
    #[error("not found: {path}")]
    NotFound { path: String },

    /// An object with that name already exists (SOAP DuplicateName, REST already_exists).
    #[error("already exists: {name}")]
    AlreadyExists { name: String },

    /// The session's user lacks a privilege (SOAP NoPermission, REST unauthorized/403).
    #[error("permission denied on {object}: missing privilege {privilege}")]
    PermissionDenied { privilege: String, object: String },

    /// The server rejected the credentials. `cached` is true when the server was not
    /// contacted because these exact credentials were already rejected: they stay unused
    /// until they change, so a directory account is not locked out by retries.
    #[error(
        "authentication failed for {username} on {server}{}",
        if *cached { " (credentials already rejected; not retried until they change)" } else { "" }
    )]
    AuthFailed { server: String, username: String, cached: bool },

    /// The session expired and a fresh login did not help.
    #[error("not authenticated on {server}")]
    NotAuthenticated { server: String },

    /// A fault that may go away by itself: connection reset or refused, request timeout,
    /// HTTP 5xx, a transient SOAP fault. `attempts` says how often it was tried.
    #[error("transient failure in {operation} after {attempts} attempt(s): {reason}")]
    Transient { operation: String, attempts: u32, reason: String },

    /// The whole operation (retries and task waits included) ran past its deadline.
    #[error("{operation} timed out after {after:?}")]
    Timeout { operation: String, after: Duration },

    /// The TLS handshake failed. `thumbprint_sha256` is the presented leaf, so the user
    /// can compare it with the vCenter's and pin it or supply the right CA.
    #[error(
        "TLS verification of {server} failed: {reason}{}",
        match thumbprint_sha256 { Some(t) => format!(" (presented certificate SHA-256 {t})"), None => String::new() }
    )]
    Tls { server: String, thumbprint_sha256: Option<String>, reason: String },

    /// The request is wrong for the current state (bad path, non-empty folder, wrong
    /// cardinality, InvalidArgument, InvalidState...). Retrying will not help.
    #[error("invalid: {message}")]
    Invalid { message: String },

    /// A server fault with no better mapping, with the vSphere fault type.
    #[error("vSphere fault {fault}: {message}")]
    Fault { fault: String, message: String },

    /// The server answered something this client cannot understand.
    #[error("protocol error: {message}")]
    Protocol { message: String },
}

impl VsphereError {
    /// True when waiting and trying again may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, VsphereError::Transient { .. } | VsphereError::Timeout { .. })
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        VsphereError::Invalid { message: message.into() }
    }

    pub(crate) fn protocol(message: impl Into<String>) -> Self {
        VsphereError::Protocol { message: message.into() }
    }

    pub(crate) fn not_found(path: impl Into<String>) -> Self {
        VsphereError::NotFound { path: path.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_classification() {
        let t = VsphereError::Transient { operation: "x".into(), attempts: 1, reason: "reset".into() };
        assert!(t.is_transient());
        assert!(VsphereError::Timeout { operation: "x".into(), after: Duration::from_secs(1) }.is_transient());
        assert!(!VsphereError::not_found("/dc").is_transient());
        assert!(!VsphereError::AuthFailed { server: "s".into(), username: "u".into(), cached: false }.is_transient());
        assert!(!VsphereError::Tls { server: "s".into(), thumbprint_sha256: None, reason: "r".into() }.is_transient());
    }

    #[test]
    fn tls_message_names_thumbprint() {
        let e = VsphereError::Tls {
            server: "vc:443".into(),
            thumbprint_sha256: Some("AB:CD".into()),
            reason: "unknown issuer".into(),
        };
        assert!(e.to_string().contains("AB:CD"), "{e}");
        let e = VsphereError::AuthFailed { server: "vc".into(), username: "u".into(), cached: true };
        assert!(e.to_string().contains("not retried"), "{e}");
    }
}
