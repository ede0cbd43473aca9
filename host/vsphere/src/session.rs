//! Sessions: the pool (one session per server and user), login/logout of SOAP and REST,
//! transparent re-login, keep-alive, retries, timeouts and traced round trips.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode, Url};
use sha2::{Digest, Sha256};
use tracing::{Instrument, Level};

use crate::error::VsphereError;
use crate::redact;
use crate::retry::{self, RetryPolicy};
use crate::soap::envelope::{self, FilterSpec, XmlWriter};
use crate::soap::fault::SoapFault;
use crate::soap::parse::{self, MoRef, Node, ObjectContent, ServiceContent, TaskState};
use crate::tls::{self, TlsPolicy, Verifier};

const SOAP_COOKIE: &str = "vmware_soap_session";
const REST_SESSION_HEADER: &str = "vmware-api-session-id";
const REST_SESSION_PATH: &str = "com/vmware/cis/session";
/// Used for RetrieveServiceContent, before the server's own version is known; every
/// vCenter since 7.0 understands it.
const BOOTSTRAP_SOAP_VERSION: &str = "7.0";

/// A password. Debug and Display never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(redact::REDACTED)
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(redact::REDACTED)
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_string())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: Secret,
}

impl Credentials {
    pub fn new(username: impl Into<String>, password: impl Into<Secret>) -> Self {
        Credentials { username: username.into(), password: password.into() }
    }

    fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.username.as_bytes());
        h.update([0]);
        h.update(self.password.expose().as_bytes());
        h.finalize().into()
    }
}

/// Which vCenter, as whom, trusting what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpec {
    /// `host`, `host:port`, or an `https://` URL (its path is ignored).
    pub server: String,
    pub credentials: Credentials,
    pub tls: TlsPolicy,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClientOptions {
    /// Deadline of one client operation, retries, re-login and task waits included.
    pub operation_timeout: Duration,
    /// TCP + TLS connection setup.
    pub connect_timeout: Duration,
    /// One HTTP round trip; a black-holed request fails after this and may be retried.
    pub request_timeout: Duration,
    /// How often an idle session is touched so vCenter does not expire it.
    pub keepalive_interval: Duration,
    pub retry: RetryPolicy,
    /// Longest pause between two polls of a running task.
    pub task_poll_max: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            operation_timeout: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(60),
            keepalive_interval: Duration::from_secs(300),
            retry: RetryPolicy::default(),
            task_poll_max: Duration::from_secs(2),
        }
    }
}

/// A parsed server address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub host: String,
    pub port: u16,
    /// `https://host:port/`
    pub base: Url,
}

impl Endpoint {
    pub fn parse(server: &str) -> Result<Endpoint, VsphereError> {
        let s = server.trim();
        if s.is_empty() {
            return Err(VsphereError::invalid("empty server address"));
        }
        let url = if s.contains("://") {
            let u = Url::parse(s).map_err(|e| VsphereError::invalid(format!("server {s:?}: {e}")))?;
            if u.scheme() != "https" {
                return Err(VsphereError::invalid(format!("server {s:?}: only https is supported")));
            }
            u
        } else {
            Url::parse(&format!("https://{s}/")).map_err(|e| VsphereError::invalid(format!("server {s:?}: {e}")))?
        };
        let host = url
            .host_str()
            .ok_or_else(|| VsphereError::invalid(format!("server {s:?} has no host")))?
            .to_ascii_lowercase();
        let port = url.port_or_known_default().unwrap_or(443);
        let mut base = url.clone();
        base.set_path("/");
        base.set_query(None);
        base.set_fragment(None);
        let _ = base.set_username("");
        let _ = base.set_password(None);
        Ok(Endpoint { host: host.trim_start_matches('[').trim_end_matches(']').to_string(), port, base })
    }

    /// `host:port` (IPv6 in brackets): the pool key and the name in errors.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    fn sdk(&self) -> Url {
        self.base.join("sdk").expect("static path")
    }

    fn rest(&self, path: &str) -> Url {
        self.base.join("rest/").and_then(|u| u.join(path)).expect("paths built by this crate")
    }
}

/// Counters shared by a pool and its clients.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    open_sessions: AtomicI64,
    logins: AtomicU64,
    login_failures: AtomicU64,
    logins_suppressed: AtomicU64,
    relogins: AtomicU64,
    logouts: AtomicU64,
    retries: AtomicU64,
    soap_round_trips: AtomicU64,
    rest_round_trips: AtomicU64,
    per_call: Mutex<BTreeMap<String, u64>>,
}

impl Counters {
    fn call(&self, key: &str) {
        *self.per_call.lock().unwrap_or_else(|e| e.into_inner()).entry(key.to_string()).or_default() += 1;
    }
}

/// A snapshot of the pool's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Sessions (SOAP + REST pair) currently logged in and held.
    pub open_sessions: i64,
    /// Successful SOAP logins (first logins and re-logins).
    pub logins: u64,
    /// Logins the server rejected.
    pub login_failures: u64,
    /// Logins not attempted because the same credentials were already rejected.
    pub logins_suppressed: u64,
    /// Re-logins after an expired or killed session.
    pub relogins: u64,
    pub logouts: u64,
    /// Requests repeated after a transient failure.
    pub retries: u64,
    pub soap_round_trips: u64,
    pub rest_round_trips: u64,
    /// Round trips per SOAP method (`soap:CreateFolder`) and REST call (`rest:GET tagging/category`).
    pub per_call: BTreeMap<String, u64>,
}

/// What the pool knows about one (server, user).
#[derive(Default)]
struct Slot {
    client: Option<Arc<Client>>,
    /// Digest of credentials the server rejected; they are not sent again.
    rejected: Option<[u8; 32]>,
}

/// `(host:port, username)`.
type SlotKey = (String, String);

struct PoolInner {
    opts: ClientOptions,
    counters: Arc<Counters>,
    slots: Mutex<HashMap<SlotKey, Arc<tokio::sync::Mutex<Slot>>>>,
    insecure: Mutex<BTreeSet<String>>,
}

/// One shared, logged-in session per (server, username). Cheap to clone.
#[derive(Clone)]
pub struct SessionPool {
    inner: Arc<PoolInner>,
}

impl std::fmt::Debug for SessionPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionPool").field("stats", &self.stats()).finish()
    }
}

impl SessionPool {
    pub fn new(opts: ClientOptions) -> Self {
        SessionPool {
            inner: Arc::new(PoolInner {
                opts,
                counters: Arc::default(),
                slots: Mutex::default(),
                insecure: Mutex::default(),
            }),
        }
    }

    /// The session for `spec`, logging in on first use. Credentials the server already
    /// rejected fail at once, without contacting it, until they change.
    pub async fn client(&self, spec: &ServerSpec) -> Result<Arc<Client>, VsphereError> {
        let ep = Endpoint::parse(&spec.server)?;
        let key = (ep.authority(), spec.credentials.username.clone());
        let slot = {
            let mut slots = self.inner.slots.lock().unwrap_or_else(|e| e.into_inner());
            slots.entry(key.clone()).or_default().clone()
        };
        // One login at a time per (server, user): concurrent callers wait and share it.
        let mut slot = slot.lock().await;
        let digest = spec.credentials.digest();
        let rejected = |cached| VsphereError::AuthFailed { server: key.0.clone(), username: key.1.clone(), cached };

        if let Some(c) = slot.client.clone() {
            if c.tls == spec.tls && !c.closed.load(Ordering::SeqCst) {
                c.update_credentials(&spec.credentials);
                if c.credentials_rejected() {
                    self.inner.counters.logins_suppressed.fetch_add(1, Ordering::Relaxed);
                    return Err(rejected(true));
                }
                return Ok(c);
            }
            // The trust settings changed (or the client was shut down): start afresh.
            slot.client = None;
            c.shutdown().await;
        }
        if slot.rejected == Some(digest) {
            self.inner.counters.logins_suppressed.fetch_add(1, Ordering::Relaxed);
            return Err(rejected(true));
        }
        match Client::connect(ep, spec, self.inner.opts.clone(), self.inner.counters.clone()).await {
            Ok(c) => {
                slot.rejected = None;
                if spec.tls.is_insecure() {
                    self.inner.insecure.lock().unwrap_or_else(|e| e.into_inner()).insert(key.0.clone());
                }
                slot.client = Some(c.clone());
                Ok(c)
            }
            Err(e @ VsphereError::AuthFailed { .. }) => {
                slot.rejected = Some(digest);
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// Log out every session (SOAP and REST) and forget them.
    pub async fn shutdown(&self) {
        let slots: Vec<_> = {
            let mut map = self.inner.slots.lock().unwrap_or_else(|e| e.into_inner());
            map.drain().map(|(_, s)| s).collect()
        };
        for s in slots {
            let mut s = s.lock().await;
            if let Some(c) = s.client.take() {
                c.shutdown().await;
            }
        }
    }

    pub fn stats(&self) -> PoolStats {
        let c = &self.inner.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        PoolStats {
            open_sessions: c.open_sessions.load(Ordering::Relaxed),
            logins: l(&c.logins),
            login_failures: l(&c.login_failures),
            logins_suppressed: l(&c.logins_suppressed),
            relogins: l(&c.relogins),
            logouts: l(&c.logouts),
            retries: l(&c.retries),
            soap_round_trips: l(&c.soap_round_trips),
            rest_round_trips: l(&c.rest_round_trips),
            per_call: c.per_call.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        }
    }

    /// Servers (`host:port`) this pool talked to without verifying certificates, so the
    /// operator can raise a warning condition.
    pub fn insecure_servers(&self) -> Vec<String> {
        self.inner.insecure.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect()
    }
}

struct AuthState {
    creds: Credentials,
    /// Set when a re-login with `creds` was rejected.
    rejected: bool,
}

/// A logged-in vCenter session (SOAP and REST). Obtain it from a [`SessionPool`].
pub struct Client {
    pub(crate) server: String,
    endpoint: Endpoint,
    http: reqwest::Client,
    verifier: Arc<Verifier>,
    pub(crate) opts: ClientOptions,
    counters: Arc<Counters>,
    tls: TlsPolicy,
    pub(crate) sc: ServiceContent,
    soap_action: String,
    auth: Mutex<AuthState>,
    soap_cookie: RwLock<Option<String>>,
    soap_gen: AtomicU64,
    rest_token: RwLock<Option<String>>,
    rest_gen: AtomicU64,
    login_lock: tokio::sync::Mutex<()>,
    closed: AtomicBool,
    /// Set once both logins succeeded and the session counts as open; until then a
    /// dropped client has nothing to log out or uncount (connect cleans up itself).
    registered: AtomicBool,
    keepalive: Mutex<Option<tokio::task::AbortHandle>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("server", &self.server)
            .field("username", &self.username())
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .finish()
    }
}

/// What one SOAP exchange produced.
struct SoapReply {
    payload: Node,
    set_cookie: Option<String>,
}

impl Client {
    /// Log in to SOAP and REST. If REST fails after SOAP succeeded, the SOAP session is
    /// logged out again before the error is returned.
    async fn connect(
        endpoint: Endpoint,
        spec: &ServerSpec,
        opts: ClientOptions,
        counters: Arc<Counters>,
    ) -> Result<Arc<Client>, VsphereError> {
        let verifier = tls::verifier(&spec.tls)?;
        let cfg = tls::client_config(verifier.clone())?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(cfg)
            .connect_timeout(opts.connect_timeout)
            .http1_only()
            .no_proxy()
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_keepalive(Duration::from_secs(60))
            .user_agent(concat!("vsm-vsphere/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| VsphereError::invalid(format!("HTTP client: {}", retry::chain(&e))))?;
        let server = endpoint.authority();
        let deadline = opts.operation_timeout;
        let span = tracing::info_span!("vsphere.connect", server = %server, username = %spec.credentials.username);
        let fut = async move {
            // A provisional client for the bootstrap exchanges (no session yet).
            let mut c = Client {
                server: server.clone(),
                endpoint,
                http,
                verifier,
                opts,
                counters,
                tls: spec.tls.clone(),
                sc: ServiceContent {
                    root_folder: MoRef::new("Folder", ""),
                    property_collector: MoRef::new("PropertyCollector", ""),
                    session_manager: MoRef::new("SessionManager", ""),
                    search_index: None,
                    about: crate::About::default(),
                },
                soap_action: format!("urn:vim25/{BOOTSTRAP_SOAP_VERSION}"),
                auth: Mutex::new(AuthState { creds: spec.credentials.clone(), rejected: false }),
                soap_cookie: RwLock::new(None),
                soap_gen: AtomicU64::new(0),
                rest_token: RwLock::new(None),
                rest_gen: AtomicU64::new(0),
                login_lock: tokio::sync::Mutex::new(()),
                closed: AtomicBool::new(false),
                registered: AtomicBool::new(false),
                keepalive: Mutex::new(None),
            };
            let si = MoRef::new("ServiceInstance", "ServiceInstance");
            let reply = c.soap_with_retries("RetrieveServiceContent", &si, "", None).await?;
            c.sc = parse::service_content(&reply.payload)?;
            if !c.sc.about.api_version.is_empty() {
                c.soap_action = format!("urn:vim25/{}", c.sc.about.api_version);
            }
            let cookie = c.login_soap(&spec.credentials).await?;
            *c.soap_cookie.write().unwrap_or_else(|e| e.into_inner()) = Some(cookie.clone());
            match c.login_rest(&spec.credentials).await {
                Ok(token) => *c.rest_token.write().unwrap_or_else(|e| e.into_inner()) = Some(token),
                Err(e) => {
                    // Half-way: do not leave the SOAP session behind.
                    c.logout_soap(&cookie).await;
                    return Err(e);
                }
            }
            c.counters.open_sessions.fetch_add(1, Ordering::SeqCst);
            c.registered.store(true, Ordering::SeqCst);
            let c = Arc::new(c);
            c.start_keepalive();
            tracing::info!(api_version = %c.sc.about.api_version, "vCenter session established");
            Ok(c)
        };
        match tokio::time::timeout(deadline, fut.instrument(span)).await {
            Ok(r) => r,
            Err(_) => Err(VsphereError::Timeout { operation: "login".into(), after: deadline }),
        }
    }

    /// `host:port` of the vCenter.
    pub fn server(&self) -> &str {
        &self.server
    }

    pub fn username(&self) -> String {
        self.auth.lock().unwrap_or_else(|e| e.into_inner()).creds.username.clone()
    }

    /// The live SOAP cookie and REST session id, for tests that check they never leak
    /// into logs. Not for production use.
    #[doc(hidden)]
    pub fn session_ids_for_tests(&self) -> (Option<String>, Option<String>) {
        (
            self.soap_cookie.read().unwrap_or_else(|e| e.into_inner()).clone(),
            self.rest_token.read().unwrap_or_else(|e| e.into_inner()).clone(),
        )
    }

    /// The TLS policy this session was built with.
    pub fn tls_policy(&self) -> &TlsPolicy {
        &self.tls
    }

    fn update_credentials(&self, creds: &Credentials) {
        let mut a = self.auth.lock().unwrap_or_else(|e| e.into_inner());
        if a.creds != *creds {
            a.creds = creds.clone();
            a.rejected = false;
        }
    }

    fn credentials_rejected(&self) -> bool {
        self.auth.lock().unwrap_or_else(|e| e.into_inner()).rejected
    }

    fn auth_failed(&self, cached: bool) -> VsphereError {
        VsphereError::AuthFailed { server: self.server.clone(), username: self.username(), cached }
    }

    fn secrets(&self) -> Vec<String> {
        let mut v = vec![self.auth.lock().unwrap_or_else(|e| e.into_inner()).creds.password.expose().to_string()];
        if let Some(c) = self.soap_cookie.read().unwrap_or_else(|e| e.into_inner()).clone() {
            v.push(c.trim_matches('"').to_string());
            v.push(c);
        }
        if let Some(t) = self.rest_token.read().unwrap_or_else(|e| e.into_inner()).clone() {
            v.push(t);
        }
        v
    }

    fn check_usable(&self) -> Result<(), VsphereError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(VsphereError::invalid(format!("session to {} was shut down", self.server)));
        }
        if self.credentials_rejected() {
            self.counters.logins_suppressed.fetch_add(1, Ordering::Relaxed);
            return Err(self.auth_failed(true));
        }
        Ok(())
    }

    /// Run one public operation under the operation deadline.
    pub(crate) async fn op<T>(
        &self,
        name: &'static str,
        fut: impl std::future::Future<Output = Result<T, VsphereError>>,
    ) -> Result<T, VsphereError> {
        self.check_usable()?;
        let span = tracing::debug_span!("vsphere.op", op = name, server = %self.server);
        let started = Instant::now();
        let r = match tokio::time::timeout(self.opts.operation_timeout, fut.instrument(span)).await {
            Ok(r) => r,
            Err(_) => Err(VsphereError::Timeout { operation: name.into(), after: self.opts.operation_timeout }),
        };
        match &r {
            Ok(_) => {
                tracing::debug!(op = name, server = %self.server, elapsed_ms = started.elapsed().as_millis() as u64, "vSphere operation done")
            }
            Err(e) => {
                tracing::info!(op = name, server = %self.server, elapsed_ms = started.elapsed().as_millis() as u64, error = %e, "vSphere operation failed")
            }
        }
        r
    }

    // ---------------------------------------------------------------- SOAP

    /// One SOAP request/response, traced, without retries.
    async fn soap_exchange(
        &self,
        method: &str,
        this: &MoRef,
        body: &str,
        cookie: Option<&str>,
    ) -> Result<SoapReply, VsphereError> {
        self.counters.soap_round_trips.fetch_add(1, Ordering::Relaxed);
        self.counters.call(&format!("soap:{method}"));
        let span = tracing::debug_span!(
            "vsphere.soap",
            method,
            object = %this,
            server = %self.server,
            status = tracing::field::Empty,
            outcome = tracing::field::Empty,
            duration_ms = tracing::field::Empty,
        );
        let started = Instant::now();
        let debug = tracing::enabled!(Level::DEBUG);
        async {
            if debug {
                let secrets = self.secrets();
                let s: Vec<&str> = secrets.iter().map(String::as_str).collect();
                let b = redact::redact_soap(body);
                tracing::debug!(body = %redact::redact_values(&b, &s), "SOAP request");
            }
            let mut req = self
                .http
                .post(self.endpoint.sdk())
                .timeout(self.opts.request_timeout)
                .header("Content-Type", "text/xml; charset=utf-8")
                .header("SOAPAction", self.soap_action.as_str())
                .body(body.to_string());
            if let Some(c) = cookie {
                req = req.header("Cookie", format!("{SOAP_COOKIE}={c}"));
            }
            let result = self.soap_send(req, method).await;
            let span = tracing::Span::current();
            span.record("duration_ms", started.elapsed().as_millis() as u64);
            match &result {
                Ok(_) => {
                    span.record("outcome", "ok");
                }
                Err(e) => {
                    span.record("outcome", tracing::field::display(e));
                }
            }
            tracing::debug!(outcome = if result.is_ok() { "ok" } else { "error" }, "SOAP call done");
            result
        }
        .instrument(span)
        .await
    }

    async fn soap_send(&self, req: reqwest::RequestBuilder, method: &str) -> Result<SoapReply, VsphereError> {
        let last = || self.verifier.last_presented.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let resp = req.send().await.map_err(|e| retry::classify_transport(&e, &self.server, method, last()))?;
        let status = resp.status();
        tracing::Span::current().record("status", status.as_u16());
        let set_cookie =
            resp.headers().get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).find_map(session_cookie_value);
        let text = resp.text().await.map_err(|e| retry::classify_transport(&e, &self.server, method, last()))?;
        if tracing::enabled!(Level::DEBUG) {
            let secrets = self.secrets();
            let mut s: Vec<&str> = secrets.iter().map(String::as_str).collect();
            if let Some(c) = &set_cookie {
                s.push(c.trim_matches('"'));
            }
            let b = redact::redact_soap(&text);
            tracing::debug!(status = status.as_u16(), body = %redact::redact_values(&b, &s), "SOAP response");
        }
        let parsed = parse::parse(&text);
        let payload = match parsed {
            Ok(root) => parse::body_payload(&root).cloned(),
            Err(e) => Err(e),
        };
        match payload {
            Ok(p) if p.name == "Fault" => Err(self.map_fault(SoapFault::from_node(&p), method)),
            Ok(p) if status.is_success() => Ok(SoapReply { payload: p, set_cookie }),
            _ if !status.is_success() => Err(retry::classify_status(status.as_u16(), method, &text)),
            Ok(_) => unreachable!("success handled above"),
            Err(e) => Err(e),
        }
    }

    fn map_fault(&self, f: SoapFault, method: &str) -> VsphereError {
        match f.kind.as_str() {
            "NotAuthenticated" => VsphereError::NotAuthenticated { server: self.server.clone() },
            "InvalidLogin" => self.auth_failed(false),
            _ => match f.into_error(method) {
                VsphereError::Transient { reason, attempts, .. } => {
                    VsphereError::Transient { operation: method.to_string(), attempts, reason }
                }
                e => e,
            },
        }
    }

    /// A SOAP call with retries on transient failures (never on anything else).
    async fn soap_with_retries(
        &self,
        method: &str,
        this: &MoRef,
        args: &str,
        cookie: Option<&str>,
    ) -> Result<SoapReply, VsphereError> {
        let body = envelope::request(method, this, args);
        let mut delays = self.opts.retry.delays();
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.soap_exchange(method, this, &body, cookie).await {
                Err(e) if e.is_transient() => match delays.next() {
                    Some(d) if !self.closed.load(Ordering::SeqCst) => {
                        self.counters.retries.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(method, attempt = attempts, delay_ms = d.as_millis() as u64, error = %e, "retrying SOAP call");
                        tokio::time::sleep(d).await;
                    }
                    _ => return Err(retry::with_attempts(e, attempts)),
                },
                r => return r,
            }
        }
    }

    /// A SOAP call on the session: retries transient failures, and re-logs in once if
    /// the session expired.
    pub(crate) async fn soap(&self, method: &str, this: &MoRef, args: &str) -> Result<Node, VsphereError> {
        let mut relogged = false;
        loop {
            let generation = self.soap_gen.load(Ordering::SeqCst);
            let cookie = self.soap_cookie.read().unwrap_or_else(|e| e.into_inner()).clone();
            let result = match self.soap_with_retries(method, this, args, cookie.as_deref()).await {
                Ok(r) if method.contains("RetrieveProperties") && parse::missing_for_lack_of_session(&r.payload) => {
                    Err(VsphereError::NotAuthenticated { server: self.server.clone() })
                }
                r => r,
            };
            match result {
                Err(VsphereError::NotAuthenticated { .. }) if !relogged => {
                    relogged = true;
                    self.relogin_soap(generation).await?;
                }
                r => return r.map(|r| r.payload),
            }
        }
    }

    async fn login_soap(&self, creds: &Credentials) -> Result<String, VsphereError> {
        let mut w = XmlWriter::new();
        w.text("userName", &creds.username).text("password", creds.password.expose());
        let sm = self.sc.session_manager.clone();
        match self.soap_with_retries("Login", &sm, &w.into_string(), None).await {
            Ok(reply) => {
                self.counters.logins.fetch_add(1, Ordering::Relaxed);
                reply.set_cookie.ok_or_else(|| VsphereError::protocol("Login answered without a session cookie"))
            }
            Err(e) => {
                if matches!(e, VsphereError::AuthFailed { .. }) {
                    self.counters.login_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(server = %self.server, username = %creds.username, "vCenter rejected the credentials; they will not be tried again until they change");
                }
                Err(e)
            }
        }
    }

    async fn logout_soap(&self, cookie: &str) {
        let sm = self.sc.session_manager.clone();
        let body = envelope::request("Logout", &sm, "");
        match self.soap_exchange("Logout", &sm, &body, Some(cookie)).await {
            Ok(_) | Err(VsphereError::NotAuthenticated { .. }) => {
                self.counters.logouts.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => tracing::info!(server = %self.server, error = %e, "SOAP logout failed"),
        }
    }

    /// Replace an expired SOAP session. `seen` is the generation the caller used: if
    /// another task already replaced it, nothing is done.
    async fn relogin_soap(&self, seen: u64) -> Result<(), VsphereError> {
        let _guard = self.login_lock.lock().await;
        if self.soap_gen.load(Ordering::SeqCst) != seen {
            return Ok(());
        }
        self.check_usable()?;
        let creds = self.auth.lock().unwrap_or_else(|e| e.into_inner()).creds.clone();
        tracing::info!(server = %self.server, "SOAP session expired; logging in again");
        match self.login_soap(&creds).await {
            Ok(cookie) => {
                *self.soap_cookie.write().unwrap_or_else(|e| e.into_inner()) = Some(cookie);
                self.soap_gen.fetch_add(1, Ordering::SeqCst);
                self.counters.relogins.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                if matches!(e, VsphereError::AuthFailed { .. }) {
                    self.mark_rejected(&creds);
                }
                Err(e)
            }
        }
    }

    fn mark_rejected(&self, creds: &Credentials) {
        let mut a = self.auth.lock().unwrap_or_else(|e| e.into_inner());
        if a.creds == *creds {
            a.rejected = true;
        }
    }

    // ---------------------------------------------------------------- REST

    /// One REST request/response, traced, without retries. `None` body for a GET/DELETE.
    async fn rest_exchange(
        &self,
        method: Method,
        path: &str,
        query: Option<&str>,
        body: Option<&serde_json::Value>,
        auth: RestAuth<'_>,
    ) -> Result<Option<serde_json::Value>, VsphereError> {
        self.counters.rest_round_trips.fetch_add(1, Ordering::Relaxed);
        let template = path_template(path);
        let call = format!("{method} {template}");
        self.counters.call(&format!("rest:{call}"));
        let span = tracing::debug_span!(
            "vsphere.rest",
            method = %method,
            path = %path,
            server = %self.server,
            status = tracing::field::Empty,
            outcome = tracing::field::Empty,
            duration_ms = tracing::field::Empty,
        );
        let started = Instant::now();
        async {
            let mut url = self.endpoint.rest(path);
            url.set_query(query);
            let secrets = self.secrets();
            let s: Vec<&str> = secrets.iter().map(String::as_str).collect();
            if let Some(b) = body
                && tracing::enabled!(Level::DEBUG)
            {
                let j = redact::redact_json(&b.to_string());
                tracing::debug!(body = %redact::redact_values(&j, &s), "REST request");
            }
            let mut req = self.http.request(method.clone(), url).timeout(self.opts.request_timeout);
            match auth {
                RestAuth::Basic(c) => req = req.basic_auth(&c.username, Some(c.password.expose())),
                RestAuth::Session(t) => req = req.header(REST_SESSION_HEADER, t),
            }
            if let Some(b) = body {
                req = req.header("Content-Type", "application/json").body(b.to_string());
            }
            let last = || self.verifier.last_presented.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let result = async {
                let resp = req.send().await.map_err(|e| retry::classify_transport(&e, &self.server, &call, last()))?;
                let status = resp.status();
                tracing::Span::current().record("status", status.as_u16());
                let text = resp.text().await.map_err(|e| retry::classify_transport(&e, &self.server, &call, last()))?;
                if tracing::enabled!(Level::DEBUG) {
                    // A session-create answer is the session id itself.
                    let shown = if path == REST_SESSION_PATH {
                        redact::REDACTED.to_string()
                    } else {
                        redact::redact_values(&redact::redact_json(&text), &s).into_owned()
                    };
                    tracing::debug!(status = status.as_u16(), body = %shown, "REST response");
                }
                self.rest_result(status, &text, path, &call)
            }
            .await;
            let span = tracing::Span::current();
            span.record("duration_ms", started.elapsed().as_millis() as u64);
            match &result {
                Ok(_) => span.record("outcome", "ok"),
                Err(e) => span.record("outcome", tracing::field::display(e)),
            };
            tracing::debug!(outcome = if result.is_ok() { "ok" } else { "error" }, "REST call done");
            result
        }
        .instrument(span)
        .await
    }

    fn rest_result(
        &self,
        status: StatusCode,
        text: &str,
        path: &str,
        call: &str,
    ) -> Result<Option<serde_json::Value>, VsphereError> {
        rest_answer(&self.server, status, text, path, call)
    }

    async fn rest_with_retries(
        &self,
        method: Method,
        path: &str,
        query: Option<&str>,
        body: Option<&serde_json::Value>,
        auth: RestAuth<'_>,
    ) -> Result<Option<serde_json::Value>, VsphereError> {
        let mut delays = self.opts.retry.delays();
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.rest_exchange(method.clone(), path, query, body, auth).await {
                Err(e) if e.is_transient() => match delays.next() {
                    Some(d) if !self.closed.load(Ordering::SeqCst) => {
                        self.counters.retries.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(%method, path, attempt = attempts, delay_ms = d.as_millis() as u64, error = %e, "retrying REST call");
                        tokio::time::sleep(d).await;
                    }
                    _ => return Err(retry::with_attempts(e, attempts)),
                },
                r => return r,
            }
        }
    }

    /// A REST call on the session (`path` below `/rest/`, `query` without `?`).
    pub(crate) async fn rest(
        &self,
        method: Method,
        path: &str,
        query: Option<&str>,
        body: Option<&serde_json::Value>,
    ) -> Result<Option<serde_json::Value>, VsphereError> {
        let mut relogged = false;
        loop {
            let generation = self.rest_gen.load(Ordering::SeqCst);
            let token = self.rest_token.read().unwrap_or_else(|e| e.into_inner()).clone().unwrap_or_default();
            match self.rest_with_retries(method.clone(), path, query, body, RestAuth::Session(&token)).await {
                Err(VsphereError::NotAuthenticated { .. }) if !relogged => {
                    relogged = true;
                    self.relogin_rest(generation).await?;
                }
                r => return r,
            }
        }
    }

    async fn login_rest(&self, creds: &Credentials) -> Result<String, VsphereError> {
        match self.rest_with_retries(Method::POST, REST_SESSION_PATH, None, None, RestAuth::Basic(creds)).await {
            Ok(Some(serde_json::Value::String(id))) if !id.is_empty() => Ok(id),
            Ok(_) => Err(VsphereError::protocol("REST session answer without a session id")),
            Err(VsphereError::NotAuthenticated { .. }) | Err(VsphereError::PermissionDenied { .. }) => {
                self.counters.login_failures.fetch_add(1, Ordering::Relaxed);
                Err(self.auth_failed(false))
            }
            Err(e) => Err(e),
        }
    }

    async fn logout_rest(&self, token: &str) {
        match self.rest_exchange(Method::DELETE, REST_SESSION_PATH, None, None, RestAuth::Session(token)).await {
            Ok(_) | Err(VsphereError::NotAuthenticated { .. }) => {}
            Err(e) => tracing::info!(server = %self.server, error = %e, "REST logout failed"),
        }
    }

    async fn relogin_rest(&self, seen: u64) -> Result<(), VsphereError> {
        let _guard = self.login_lock.lock().await;
        if self.rest_gen.load(Ordering::SeqCst) != seen {
            return Ok(());
        }
        self.check_usable()?;
        let creds = self.auth.lock().unwrap_or_else(|e| e.into_inner()).creds.clone();
        tracing::info!(server = %self.server, "REST session expired; logging in again");
        match self.login_rest(&creds).await {
            Ok(token) => {
                *self.rest_token.write().unwrap_or_else(|e| e.into_inner()) = Some(token);
                self.rest_gen.fetch_add(1, Ordering::SeqCst);
                self.counters.relogins.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                if matches!(e, VsphereError::AuthFailed { .. }) {
                    self.mark_rejected(&creds);
                }
                Err(e)
            }
        }
    }

    // ---------------------------------------------------------------- lifecycle

    fn start_keepalive(self: &Arc<Self>) {
        let weak: Weak<Client> = Arc::downgrade(self);
        let every = self.opts.keepalive_interval;
        let handle = tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(c) = weak.upgrade() else { break };
                if c.closed.load(Ordering::SeqCst) {
                    break;
                }
                if let Err(e) = c.keepalive_once().await {
                    tracing::warn!(server = %c.server, error = %e, "vCenter keep-alive failed");
                }
            }
        });
        *self.keepalive.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle.abort_handle());
    }

    /// Touch both sessions; log in again if the server dropped one.
    pub async fn keepalive_once(&self) -> Result<(), VsphereError> {
        self.op("keepalive", async {
            let generation = self.soap_gen.load(Ordering::SeqCst);
            if self.current_session_key().await?.is_none() {
                self.relogin_soap(generation).await?;
            }
            let generation = self.rest_gen.load(Ordering::SeqCst);
            let token = self.rest_token.read().unwrap_or_else(|e| e.into_inner()).clone().unwrap_or_default();
            match self
                .rest_with_retries(
                    Method::POST,
                    REST_SESSION_PATH,
                    Some("~action=get"),
                    None,
                    RestAuth::Session(&token),
                )
                .await
            {
                Err(VsphereError::NotAuthenticated { .. }) => self.relogin_rest(generation).await,
                Err(e) => Err(e),
                Ok(_) => Ok(()),
            }
        })
        .await
    }

    /// The SOAP session's key as the server sees it (None: not logged in).
    async fn current_session_key(&self) -> Result<Option<String>, VsphereError> {
        let objs = self.retrieve(&FilterSpec::object(&self.sc.session_manager, &["currentSession"])).await?;
        Ok(objs
            .first()
            .and_then(|o| o.prop("currentSession"))
            .and_then(|s| s.child_text("key"))
            .map(str::to_string)
            .filter(|k| !k.is_empty()))
    }

    /// Log out of SOAP and REST and stop the keep-alive. Idempotent.
    pub async fn shutdown(&self) {
        if self.closed.swap(true, Ordering::SeqCst) || !self.registered.load(Ordering::SeqCst) {
            return;
        }
        if let Some(h) = self.keepalive.lock().unwrap_or_else(|e| e.into_inner()).take() {
            h.abort();
        }
        let token = self.rest_token.write().unwrap_or_else(|e| e.into_inner()).take();
        let cookie = self.soap_cookie.write().unwrap_or_else(|e| e.into_inner()).take();
        let logout = async {
            if let Some(t) = token {
                self.logout_rest(&t).await;
            }
            if let Some(c) = cookie {
                self.logout_soap(&c).await;
            }
        };
        // Bounded: a dead server must not hold up the operator's shutdown.
        let _ = tokio::time::timeout(self.opts.request_timeout, logout).await;
        self.counters.open_sessions.fetch_sub(1, Ordering::SeqCst);
        tracing::info!(server = %self.server, "vCenter session closed");
    }

    // ---------------------------------------------------------------- helpers used by the operations

    /// RetrievePropertiesEx, following continuation tokens.
    pub(crate) async fn retrieve(&self, spec: &FilterSpec) -> Result<Vec<ObjectContent>, VsphereError> {
        let pc = self.sc.property_collector.clone();
        let resp = self.soap("RetrievePropertiesEx", &pc, &envelope::retrieve_properties_ex(spec, None)).await?;
        let (mut objs, mut token) = parse::retrieve_result(&resp)?;
        while let Some(t) = token {
            let mut w = XmlWriter::new();
            w.text("token", &t);
            let resp = self.soap("ContinueRetrievePropertiesEx", &pc, &w.into_string()).await?;
            let (more, next) = parse::retrieve_result(&resp)?;
            objs.extend(more);
            token = next;
        }
        Ok(objs)
    }

    /// Poll a task's `info` until it finishes; the result value on success.
    pub(crate) async fn wait_task(&self, task: &MoRef) -> Result<Option<Node>, VsphereError> {
        let mut pause = Duration::from_millis(50);
        loop {
            let objs = self.retrieve(&FilterSpec::object(task, &["info"])).await?;
            let info = objs
                .first()
                .and_then(|o| o.prop("info"))
                .ok_or_else(|| VsphereError::protocol(format!("task {task} has no info")))?;
            match parse::task_info(info)? {
                TaskState::Running => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(self.opts.task_poll_max);
                }
                TaskState::Success(r) => return Ok(r),
                TaskState::Error(e) => return Err(e),
            }
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Some(h) = self.keepalive.lock().unwrap_or_else(|e| e.into_inner()).take() {
            h.abort();
        }
        if self.closed.swap(true, Ordering::SeqCst) || !self.registered.load(Ordering::SeqCst) {
            return;
        }
        // Dropped without shutdown (pool dropped): log out in the background if a
        // runtime is still there, so the server does not keep the sessions for hours.
        self.counters.open_sessions.fetch_sub(1, Ordering::SeqCst);
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let http = self.http.clone();
        let sdk = self.endpoint.sdk();
        let rest = self.endpoint.rest(REST_SESSION_PATH);
        let action = self.soap_action.clone();
        let body = envelope::request("Logout", &self.sc.session_manager, "");
        let cookie = self.soap_cookie.write().unwrap_or_else(|e| e.into_inner()).take();
        let token = self.rest_token.write().unwrap_or_else(|e| e.into_inner()).take();
        let timeout = self.opts.request_timeout;
        rt.spawn(async move {
            if let Some(t) = token {
                let _ = http.delete(rest).timeout(timeout).header(REST_SESSION_HEADER, t).send().await;
            }
            if let Some(c) = cookie {
                let _ = http
                    .post(sdk)
                    .timeout(timeout)
                    .header("Content-Type", "text/xml; charset=utf-8")
                    .header("SOAPAction", action)
                    .header("Cookie", format!("{SOAP_COOKIE}={c}"))
                    .body(body)
                    .send()
                    .await;
            }
        });
    }
}

#[derive(Clone, Copy)]
enum RestAuth<'a> {
    Basic(&'a Credentials),
    Session(&'a str),
}

/// What a REST answer means: the `value` of a 2xx JSON answer (None when empty), or the
/// error its status and body say. `server`, `path` and `call` only go into error texts.
pub(crate) fn rest_answer(
    server: &str,
    status: StatusCode,
    text: &str,
    path: &str,
    call: &str,
) -> Result<Option<serde_json::Value>, VsphereError> {
    let json: Option<serde_json::Value> = if text.trim().is_empty() { None } else { serde_json::from_str(text).ok() };
    if status.is_success() {
        if !text.trim().is_empty() && json.is_none() {
            return Err(VsphereError::protocol(format!("{call}: answer is not JSON")));
        }
        return Ok(json.and_then(|mut j| j.get_mut("value").map(serde_json::Value::take)));
    }
    let kind = json
        .as_ref()
        .and_then(|j| j.get("type").or_else(|| j.get("error_type")))
        .and_then(|t| t.as_str())
        .unwrap_or_default()
        .rsplit('.')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let messages = json.as_ref().and_then(|j| j.pointer("/value/messages")).map(|m| m.to_string()).unwrap_or_default();
    Err(match (status.as_u16(), kind.as_str()) {
        (401, _) | (_, "unauthenticated") => VsphereError::NotAuthenticated { server: server.to_string() },
        (403, _) | (_, "unauthorized") => {
            VsphereError::PermissionDenied { privilege: messages, object: path.to_string() }
        }
        (404, _) | (_, "not_found") => VsphereError::not_found(path),
        (_, "already_exists") => VsphereError::AlreadyExists { name: path.to_string() },
        (_, "invalid_argument") | (_, "not_allowed_in_current_state") | (_, "resource_in_use") | (_, "unsupported") => {
            VsphereError::invalid(format!("{call}: {kind} {messages}"))
        }
        (_, "service_unavailable") | (_, "resource_busy") | (_, "timed_out") => {
            VsphereError::Transient { operation: call.to_string(), attempts: 1, reason: format!("{kind} {messages}") }
        }
        (s, _) => retry::classify_status(s, call, text),
    })
}

/// The value of the SOAP session cookie in a Set-Cookie header, as sent back later.
fn session_cookie_value(header: &str) -> Option<String> {
    let first = header.split(';').next()?.trim();
    let (name, value) = first.split_once('=')?;
    (name.trim() == SOAP_COOKIE && !value.trim().is_empty()).then(|| value.trim().to_string())
}

/// REST path with ids replaced, for per-call counters (`tagging/tag/id:*`).
fn path_template(path: &str) -> String {
    let p = path.strip_prefix("com/vmware/cis/").unwrap_or(path);
    p.split('/').map(|seg| if seg.starts_with("id:") { "id:*" } else { seg }).collect::<Vec<_>>().join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let e = Endpoint::parse("vc.example.com").unwrap();
        assert_eq!(e.authority(), "vc.example.com:443");
        assert_eq!(e.sdk().as_str(), "https://vc.example.com/sdk");
        let e = Endpoint::parse("127.0.0.1:8989").unwrap();
        assert_eq!(e.authority(), "127.0.0.1:8989");
        assert_eq!(e.rest("com/vmware/cis/session").as_str(), "https://127.0.0.1:8989/rest/com/vmware/cis/session");
        let e = Endpoint::parse("https://User:pw@VC.Example.com:8443/sdk").unwrap();
        assert_eq!(e.authority(), "vc.example.com:8443");
        assert_eq!(e.sdk().as_str(), "https://vc.example.com:8443/sdk");
        let e = Endpoint::parse("[::1]:9443").unwrap();
        assert_eq!(e.authority(), "[::1]:9443");
        assert_eq!(e.host, "::1");
        assert!(Endpoint::parse("http://vc").is_err());
        assert!(Endpoint::parse("  ").is_err());
    }

    #[test]
    fn secret_never_printed() {
        let c = Credentials::new("admin", "hunter22");
        let dbg = format!("{c:?} {}", c.password);
        assert!(!dbg.contains("hunter22"), "{dbg}");
        assert!(dbg.contains("<redacted>"));
        let spec = ServerSpec { server: "vc".into(), credentials: c, tls: TlsPolicy::default() };
        assert!(!format!("{spec:?}").contains("hunter22"));
    }

    #[test]
    fn credentials_digest_depends_on_both_parts() {
        let a = Credentials::new("u", "p1").digest();
        assert_eq!(a, Credentials::new("u", "p1").digest());
        assert_ne!(a, Credentials::new("u", "p2").digest());
        assert_ne!(Credentials::new("ab", "c").digest(), Credentials::new("a", "bc").digest());
    }

    #[test]
    fn cookies() {
        assert_eq!(
            session_cookie_value("vmware_soap_session=\"52b1\"; Path=/; HttpOnly; Secure;").as_deref(),
            Some("\"52b1\"")
        );
        assert_eq!(session_cookie_value("vmware_soap_session=abc").as_deref(), Some("abc"));
        assert_eq!(session_cookie_value("other=1; vmware_soap_session=abc"), None);
        assert_eq!(session_cookie_value("vmware_soap_session=; Path=/"), None);
    }

    #[test]
    fn templates() {
        assert_eq!(path_template("com/vmware/cis/tagging/tag/id:urn:vmomi:x"), "tagging/tag/id:*");
        assert_eq!(path_template("com/vmware/cis/session"), "session");
    }
}
