//! How a vCenter is reached: its address, the TLS trust settings, and the HTTP client
//! built from them. [`Endpoint::send`] is the one place a request leaves the process;
//! it turns transport failures into typed errors (a rejected certificate names the
//! presented thumbprint and is permanent; refused, reset or timed out is transient).
//! Sessions, tracing and retries are the session layer's business, not this one's.

pub(crate) mod address;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder, StatusCode, Url};

pub(crate) use self::address::Address;
use self::tls::{TlsPolicy, Verifier};
use crate::error::VsphereError;
use crate::retry;

/// A vCenter address with its trust settings and a connection-pooling HTTP client.
pub(crate) struct Endpoint {
    address: Address,
    /// `host:port`, the server's name in errors and traces.
    authority: String,
    policy: TlsPolicy,
    verifier: Arc<Verifier>,
    http: reqwest::Client,
}

/// A complete HTTP answer: status, headers and the body as text.
pub(crate) struct HttpReply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Endpoint {
    /// Build the HTTP client for `address`, trusting what `policy` says.
    pub fn new(address: Address, policy: &TlsPolicy, connect_timeout: Duration) -> Result<Endpoint, VsphereError> {
        let verifier = tls::verifier(policy)?;
        let cfg = tls::client_config(verifier.clone())?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(cfg)
            .connect_timeout(connect_timeout)
            .http1_only()
            .no_proxy()
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_keepalive(Duration::from_secs(60))
            .user_agent(concat!("vsm-vsphere/", env!("CARGO_PKG_VERSION")))
            // A redirect would re-send a login body (the password) to wherever it points.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| VsphereError::invalid(format!("HTTP client: {}", retry::chain(&e))))?;
        let authority = address.authority();
        Ok(Endpoint { address, authority, policy: policy.clone(), verifier, http })
    }

    /// `host:port` of the vCenter.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The TLS policy the HTTP client was built with.
    pub fn policy(&self) -> &TlsPolicy {
        &self.policy
    }

    /// The SOAP endpoint (`/sdk`).
    pub fn sdk(&self) -> Url {
        self.address.sdk()
    }

    /// A REST URL (`path` below `/rest/`).
    pub fn rest(&self, path: &str) -> Url {
        self.address.rest(path)
    }

    /// A request to `url` on this endpoint's HTTP client, bounded by `timeout`.
    pub fn request(&self, method: Method, url: Url, timeout: Duration) -> RequestBuilder {
        self.http.request(method, url).timeout(timeout)
    }

    /// Send `req` (built by [`Endpoint::request`]) and read the whole answer. The status
    /// is recorded on the current span's `status` field. `operation` names the call in
    /// errors.
    pub async fn send(&self, req: RequestBuilder, operation: &str) -> Result<HttpReply, VsphereError> {
        let resp = req.send().await.map_err(|e| self.transport_error(&e, operation))?;
        let status = resp.status();
        tracing::Span::current().record("status", status.as_u16());
        if status.is_redirection() {
            let location = resp.headers().get(reqwest::header::LOCATION).and_then(|v| v.to_str().ok());
            let to: String = location.unwrap_or("nowhere").chars().take(200).collect();
            return Err(VsphereError::Protocol {
                message: format!(
                    "{operation}: {} answered HTTP {status} to {to}; redirects are not followed (the request may carry credentials)",
                    self.authority
                ),
            });
        }
        let headers = resp.headers().clone();
        let body = resp.text().await.map_err(|e| self.transport_error(&e, operation))?;
        Ok(HttpReply { status, headers, body })
    }

    fn transport_error(&self, err: &reqwest::Error, operation: &str) -> VsphereError {
        classify_transport(err, &self.authority, operation, self.verifier.last_presented())
    }
}

/// Map a reqwest failure to a typed error. TLS failures are permanent (retrying a wrong
/// certificate cannot help) and carry the presented thumbprint; everything else at the
/// transport level (refused, reset, request timeout, broken body) is transient.
fn classify_transport(
    err: &reqwest::Error,
    server: &str,
    operation: &str,
    last_presented: Option<String>,
) -> VsphereError {
    if let Some((thumb, reason)) = tls::find_tls_failure(err) {
        return VsphereError::Tls { server: server.to_string(), thumbprint_sha256: thumb.or(last_presented), reason };
    }
    if err.is_builder() {
        return VsphereError::invalid(format!("{operation}: {}", retry::chain(err)));
    }
    let what = if err.is_timeout() {
        "request timed out"
    } else if err.is_connect() {
        "cannot connect"
    } else {
        "connection failed"
    };
    VsphereError::Transient {
        operation: operation.to_string(),
        attempts: 1,
        reason: format!("{what}: {}", retry::chain(err)),
    }
}
