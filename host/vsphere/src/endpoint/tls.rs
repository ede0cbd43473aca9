//! Whom to trust: the server certificate is verified by default (system roots plus an
//! optional CA bundle), or pinned to one SHA-256 leaf, or not checked when explicitly
//! asked; every failure names the presented thumbprint. Also the thumbprint helpers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error as TlsError, OtherError, SignatureScheme};
use sha2::{Digest, Sha256};

use super::address::Address;
use crate::error::VsphereError;

/// How the server certificate is checked.
///
/// With `thumbprint_sha256` set only that exact leaf is accepted (CA and hostname are
/// not consulted: a pin is stricter than both). Otherwise the chain must verify against
/// the system roots plus `ca_bundle_pem`, unless `insecure` is set, which accepts any
/// certificate and is reported by [`crate::SessionPool::insecure_servers`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsPolicy {
    pub ca_bundle_pem: Option<String>,
    pub thumbprint_sha256: Option<String>,
    pub insecure: bool,
}

impl TlsPolicy {
    /// True when certificates are not verified at all.
    pub fn is_insecure(&self) -> bool {
        self.insecure && self.thumbprint_sha256.is_none()
    }
}

/// `AA:BB:...` SHA-256 of a DER certificate, the form vCenter and govc print.
pub fn thumbprint_sha256(der: &[u8]) -> String {
    let sum = Sha256::digest(der);
    sum.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

/// Normalise a user-supplied SHA-256 thumbprint (colons, spaces, case) to bare lowercase hex.
pub fn normalize_thumbprint(t: &str) -> Result<String, VsphereError> {
    let hex: String = t
        .trim()
        .trim_start_matches("sha256:")
        .trim_start_matches("SHA256:")
        .chars()
        .filter(|c| !matches!(c, ':' | ' ' | '-'))
        .collect::<String>()
        .to_ascii_lowercase();
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(VsphereError::invalid(format!(
            "thumbprint {t:?} is not a SHA-256 fingerprint (64 hex digits, colons allowed)"
        )));
    }
    Ok(hex)
}

/// Attached to a rejected certificate so the caller can report what was presented.
#[derive(Debug)]
pub(crate) struct Rejected {
    pub thumbprint: String,
    pub reason: String,
}

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (presented certificate SHA-256 {})", self.reason, self.thumbprint)
    }
}

impl std::error::Error for Rejected {}

fn reject(thumbprint: String, reason: String) -> TlsError {
    TlsError::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(Rejected { thumbprint, reason }))))
}

fn provider() -> Arc<CryptoProvider> {
    // Explicit: reqwest's own feature set compiles a second provider in, and the
    // process-wide default would then be ambiguous.
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Make ring the process-wide rustls provider, for the TLS clients that do not pick one
/// themselves (the Kubernetes client). Several crates compile both ring and aws-lc-rs in,
/// and rustls refuses to guess: without this a process panics at its first TLS client.
/// Returns false if a default was installed already (which is fine).
pub fn install_default_crypto_provider() -> bool {
    rustls::crypto::ring::default_provider().install_default().is_ok()
}

#[derive(Debug)]
enum Mode {
    /// Chain verification; the inner verifier does all the work.
    Verify(Arc<dyn ServerCertVerifier>),
    /// Exactly this leaf (lowercase hex SHA-256).
    Pin(String),
    /// Anything, but the handshake signature must still match the presented key.
    Insecure,
}

/// One verifier for all three policies; it also remembers the last presented leaf so
/// errors can name it even when the failure surfaced elsewhere in the stack.
#[derive(Debug)]
pub(crate) struct Verifier {
    mode: Mode,
    algs: WebPkiSupportedAlgorithms,
    last_presented: Mutex<Option<String>>,
}

impl Verifier {
    /// SHA-256 of the leaf the server presented last, for errors raised after the handshake.
    pub(crate) fn last_presented(&self) -> Option<String> {
        self.last_presented.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        let thumb = thumbprint_sha256(end_entity);
        *self.last_presented.lock().unwrap_or_else(|e| e.into_inner()) = Some(thumb.clone());
        match &self.mode {
            Mode::Verify(inner) => inner
                .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
                .map_err(|e| reject(thumb, e.to_string())),
            Mode::Pin(pin) => {
                let presented = thumb.replace(':', "").to_ascii_lowercase();
                if &presented == pin {
                    Ok(ServerCertVerified::assertion())
                } else {
                    Err(reject(thumb, "certificate does not match the pinned SHA-256 thumbprint".into()))
                }
            }
            Mode::Insecure => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        match &self.mode {
            Mode::Verify(inner) => inner.verify_tls12_signature(message, cert, dss),
            _ => rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs),
        }
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        match &self.mode {
            Mode::Verify(inner) => inner.verify_tls13_signature(message, cert, dss),
            _ => rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs),
        }
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// Parse every certificate of a PEM bundle; an empty or broken bundle is an error
/// (silently trusting only the system roots would hide a configuration mistake).
pub(crate) fn parse_pem_bundle(pem: &str) -> Result<Vec<CertificateDer<'static>>, VsphereError> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| VsphereError::invalid(format!("CA bundle: {e}")))?;
    if certs.is_empty() {
        return Err(VsphereError::invalid("CA bundle holds no PEM certificate"));
    }
    Ok(certs)
}

/// Build the verifier for a policy.
pub(crate) fn verifier(policy: &TlsPolicy) -> Result<Arc<Verifier>, VsphereError> {
    let provider = provider();
    let algs = provider.signature_verification_algorithms;
    let mode = if let Some(t) = &policy.thumbprint_sha256 {
        Mode::Pin(normalize_thumbprint(t)?)
    } else if policy.insecure {
        Mode::Insecure
    } else {
        let mut roots = rustls::RootCertStore::empty();
        // System roots as the container sees them (SSL_CERT_FILE, /etc/ssl/certs, and
        // the /etc/pki path where OpenShift injects its trusted CA bundle).
        let native = rustls_native_certs::load_native_certs();
        for c in native.certs {
            let _ = roots.add(c);
        }
        if let Some(pem) = &policy.ca_bundle_pem {
            for c in parse_pem_bundle(pem)? {
                roots.add(c).map_err(|e| VsphereError::invalid(format!("CA bundle certificate: {e}")))?;
            }
        }
        if roots.is_empty() {
            return Err(VsphereError::invalid(
                "no trusted roots: the system has none and no CA bundle was given (pin a thumbprint or supply the CA)",
            ));
        }
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| VsphereError::invalid(format!("TLS verifier: {e}")))?;
        Mode::Verify(inner)
    };
    Ok(Arc::new(Verifier { mode, algs, last_presented: Mutex::new(None) }))
}

/// A rustls client configuration using `verifier`.
pub(crate) fn client_config(verifier: Arc<Verifier>) -> Result<rustls::ClientConfig, VsphereError> {
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| VsphereError::invalid(format!("TLS versions: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    // HTTP/1.1 only: one request per connection at a time keeps fault handling simple,
    // and vCenter's SOAP endpoint gains nothing from multiplexing here.
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Find a rejected-certificate report anywhere in an error chain. `io::Error` hides its
/// payload from `source()`, so it is unwrapped by hand.
pub(crate) fn find_tls_failure(err: &(dyn std::error::Error + 'static)) -> Option<(Option<String>, String)> {
    if let Some(found) = tls_error_of(err) {
        return Some(found);
    }
    // io::Error hides its payload from source() (and may wrap another io::Error).
    if let Some(inner) = err.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref())
        && let Some(found) = find_tls_failure(inner)
    {
        return Some(found);
    }
    err.source().and_then(find_tls_failure)
}

fn tls_error_of(e: &(dyn std::error::Error + 'static)) -> Option<(Option<String>, String)> {
    let tls = e.downcast_ref::<TlsError>()?;
    if let TlsError::InvalidCertificate(CertificateError::Other(OtherError(inner))) = tls
        && let Some(r) = inner.downcast_ref::<Rejected>()
    {
        return Some((Some(r.thumbprint.clone()), r.reason.clone()));
    }
    Some((None, tls.to_string()))
}

/// Read the SHA-256 thumbprint of the certificate a server presents, without trusting
/// it, for the user to confirm before pinning. `server` is `host`, `host:port` or a URL.
pub async fn fetch_thumbprint(server: &str) -> Result<String, VsphereError> {
    fetch_thumbprint_with_timeout(server, Duration::from_secs(30)).await
}

/// [`fetch_thumbprint`] with an explicit connect and handshake timeout.
pub async fn fetch_thumbprint_with_timeout(server: &str, timeout: Duration) -> Result<String, VsphereError> {
    let address = Address::parse(server)?;
    let host = address.host.clone();
    let addr = address.authority();
    let verifier = verifier(&TlsPolicy { insecure: true, ..Default::default() })?;
    let cfg = Arc::new(client_config(verifier.clone())?);
    let job = tokio::task::spawn_blocking(move || -> Result<String, VsphereError> {
        use std::net::ToSocketAddrs;
        let sock = addr
            .to_socket_addrs()
            .map_err(|e| VsphereError::invalid(format!("resolve {addr}: {e}")))?
            .next()
            .ok_or_else(|| VsphereError::invalid(format!("resolve {addr}: no address")))?;
        let transient =
            |reason: String| VsphereError::Transient { operation: "fetch_thumbprint".into(), attempts: 1, reason };
        let mut tcp = std::net::TcpStream::connect_timeout(&sock, timeout)
            .map_err(|e| transient(format!("connect {addr}: {e}")))?;
        tcp.set_read_timeout(Some(timeout)).ok();
        tcp.set_write_timeout(Some(timeout)).ok();
        let name = ServerName::try_from(host.clone())
            .map_err(|e| VsphereError::invalid(format!("server name {host:?}: {e}")))?;
        let mut conn = rustls::ClientConnection::new(cfg, name).map_err(|e| VsphereError::invalid(e.to_string()))?;
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp).map_err(|e| transient(format!("TLS handshake with {addr}: {e}")))?;
        }
        let leaf = conn
            .peer_certificates()
            .and_then(|c| c.first())
            .ok_or_else(|| VsphereError::protocol("server presented no certificate"))?;
        Ok(thumbprint_sha256(leaf))
    });
    job.await.map_err(|e| VsphereError::protocol(format!("thumbprint task: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbprint_format() {
        let t = thumbprint_sha256(b"abc");
        assert_eq!(t.len(), 95);
        assert!(t.starts_with("BA:78:16:BF"), "{t}");
        assert_eq!(normalize_thumbprint(&t).unwrap(), hex::encode(Sha256::digest(b"abc")));
        assert_eq!(normalize_thumbprint(&t.to_lowercase()).unwrap(), normalize_thumbprint(&t).unwrap());
        assert!(normalize_thumbprint("AB:CD").is_err());
        assert!(normalize_thumbprint(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn pem_bundle_must_hold_certificates() {
        assert!(parse_pem_bundle("").is_err());
        assert!(parse_pem_bundle("-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n").is_err());
        let ca = rcgen::generate_simple_self_signed(vec!["ca.test".into()]).unwrap();
        assert_eq!(parse_pem_bundle(&ca.cert.pem()).unwrap().len(), 1);
        let two = format!("{}{}", ca.cert.pem(), ca.cert.pem());
        assert_eq!(parse_pem_bundle(&two).unwrap().len(), 2);
    }

    #[test]
    fn pin_accepts_exactly_the_leaf() {
        let a = rcgen::generate_simple_self_signed(vec!["a.test".into()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["a.test".into()]).unwrap();
        let der_a = a.cert.der().clone();
        let der_b = b.cert.der().clone();
        let v =
            verifier(&TlsPolicy { thumbprint_sha256: Some(thumbprint_sha256(&der_a)), ..Default::default() }).unwrap();
        let name = ServerName::try_from("a.test").unwrap();
        assert!(v.verify_server_cert(&der_a, &[], &name, &[], UnixTime::now()).is_ok());
        let err = v.verify_server_cert(&der_b, &[], &name, &[], UnixTime::now()).unwrap_err();
        let (thumb, _) = find_tls_failure(&err).unwrap();
        assert_eq!(thumb.unwrap(), thumbprint_sha256(&der_b));
    }

    #[test]
    fn ca_mode_names_presented_cert() {
        let other_ca = rcgen::generate_simple_self_signed(vec!["ca.test".into()]).unwrap();
        let leaf = rcgen::generate_simple_self_signed(vec!["vc.test".into()]).unwrap();
        let v = verifier(&TlsPolicy { ca_bundle_pem: Some(other_ca.cert.pem()), ..Default::default() }).unwrap();
        let name = ServerName::try_from("vc.test").unwrap();
        let err = v.verify_server_cert(leaf.cert.der(), &[], &name, &[], UnixTime::now()).unwrap_err();
        let (thumb, reason) = find_tls_failure(&err).unwrap();
        assert_eq!(thumb.unwrap(), thumbprint_sha256(leaf.cert.der()));
        assert!(!reason.is_empty());
        // Wrapped in io::Error as tokio-rustls does, and again by a connector: still found.
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, err);
        let io = std::io::Error::other(io);
        assert!(find_tls_failure(&io).unwrap().0.is_some());
    }

    #[test]
    fn insecure_flag_and_pin_precedence() {
        assert!(TlsPolicy { insecure: true, ..Default::default() }.is_insecure());
        let pinned = TlsPolicy { insecure: true, thumbprint_sha256: Some("00".repeat(32)), ..Default::default() };
        assert!(!pinned.is_insecure());
    }
}
