//! A logged-in client of one vCenter: a SOAP and a REST [`SessionSlot`] on one wire.
//! Its lifecycle (login of both, logout of SOAP again if REST fails half-way, the
//! keep-alive task, shutdown, logout in the background when dropped) and the calls the
//! operations are built on (`op` with its deadline, `soap`, `rest`, `retrieve`,
//! `wait_task`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use reqwest::Method;
use tracing::Instrument;

use super::config::{ClientOptions, ServerSpec};
use super::rest::{self, Rest, RestAuth, RestRequest};
use super::slot::SessionSlot;
use super::soap::Soap;
use super::stats::Counters;
use super::wire::Wire;
use crate::endpoint::tls::TlsPolicy;
use crate::endpoint::{Address, Endpoint};
use crate::error::VsphereError;
use crate::soap::envelope::{self, FilterSpec, XmlWriter};
use crate::soap::parse::{self, About, MoRef, Node, ObjectContent, ServiceContent, TaskState};

/// A logged-in vCenter session (SOAP and REST). Obtain it from a [`SessionPool`](super::SessionPool).
pub struct Client {
    wire: Wire,
    pub(crate) sc: ServiceContent,
    soap_session: SessionSlot<Soap>,
    rest_session: SessionSlot<Rest>,
    /// Set once both logins succeeded and the session counts as open.
    registered: AtomicBool,
    keepalive: Mutex<Option<tokio::task::AbortHandle>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("server", &self.server())
            .field("username", &self.username())
            .field("closed", &self.wire.is_closed())
            .finish()
    }
}

impl Client {
    /// Log in to SOAP and REST within the operation deadline. If REST fails after SOAP
    /// succeeded, the SOAP session is logged out again before the error is returned.
    pub(crate) async fn connect(
        address: Address,
        spec: &ServerSpec,
        opts: ClientOptions,
        counters: Arc<Counters>,
    ) -> Result<Arc<Client>, VsphereError> {
        let endpoint = Endpoint::new(address, &spec.tls, opts.connect_timeout)?;
        let deadline = opts.operation_timeout;
        let wire = Wire::new(endpoint, opts, counters, spec.credentials.clone());
        let span =
            tracing::info_span!("vsphere.connect", server = %wire.server(), username = %spec.credentials.username);
        match tokio::time::timeout(deadline, Self::log_in(wire).instrument(span)).await {
            Ok(r) => r,
            Err(_) => Err(VsphereError::Timeout { operation: "login".into(), after: deadline }),
        }
    }

    async fn log_in(wire: Wire) -> Result<Arc<Client>, VsphereError> {
        let si = MoRef::new("ServiceInstance", "ServiceInstance");
        let reply = Soap::bootstrap().call(&wire, "RetrieveServiceContent", &si, "", None).await?;
        let sc = parse::service_content(&reply.payload)?;
        let soap_session = SessionSlot::new(Soap::for_service(&sc), &wire);
        let rest_session = SessionSlot::new(Rest, &wire);
        let c = Client {
            wire,
            sc,
            soap_session,
            rest_session,
            registered: AtomicBool::new(false),
            keepalive: Mutex::new(None),
        };
        c.soap_session.login(&c.wire).await?;
        if let Err(e) = c.rest_session.login(&c.wire).await {
            // Half-way: do not leave the SOAP session behind.
            c.soap_session.logout(&c.wire).await;
            return Err(e);
        }
        c.wire.counters.open_sessions.fetch_add(1, Ordering::SeqCst);
        c.registered.store(true, Ordering::SeqCst);
        let c = Arc::new(c);
        c.start_keepalive();
        tracing::info!(api_version = %c.sc.about.api_version, "vCenter session established");
        Ok(c)
    }

    /// `host:port` of the vCenter.
    pub fn server(&self) -> &str {
        self.wire.server()
    }

    pub fn username(&self) -> String {
        self.wire.auth.username()
    }

    /// The live SOAP cookie and REST session id, for tests that check they never leak
    /// into logs. Not for production use.
    #[doc(hidden)]
    pub fn session_ids_for_tests(&self) -> (Option<String>, Option<String>) {
        (self.soap_session.id(), self.rest_session.id())
    }

    /// The TLS policy this session was built with.
    pub fn tls_policy(&self) -> &TlsPolicy {
        self.wire.endpoint.policy()
    }

    /// Product, version and instance UUID, as read at login (they do not change while
    /// a session lives).
    pub async fn about(&self) -> Result<About, VsphereError> {
        Ok(self.sc.about.clone())
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.wire.is_closed()
    }

    pub(crate) fn credentials_rejected(&self) -> bool {
        self.wire.auth.rejected()
    }

    /// Run one public operation under the operation deadline.
    pub(crate) async fn op<T>(
        &self,
        name: &'static str,
        fut: impl std::future::Future<Output = Result<T, VsphereError>>,
    ) -> Result<T, VsphereError> {
        self.wire.check_usable()?;
        let server = self.server();
        let deadline = self.wire.opts.operation_timeout;
        let span = tracing::debug_span!("vsphere.op", op = name, server = %server);
        let started = Instant::now();
        let r = match tokio::time::timeout(deadline, fut.instrument(span)).await {
            Ok(r) => r,
            Err(_) => Err(VsphereError::Timeout { operation: name.into(), after: deadline }),
        };
        let elapsed_ms = started.elapsed().as_millis() as u64;
        match &r {
            Ok(_) => tracing::debug!(op = name, server = %server, elapsed_ms, "vSphere operation done"),
            Err(e) => tracing::info!(op = name, server = %server, elapsed_ms, error = %e, "vSphere operation failed"),
        }
        r
    }

    /// A SOAP call on the session: retries transient failures, and logs in again once
    /// if the session expired.
    pub(crate) async fn soap(&self, method: &str, this: &MoRef, args: &str) -> Result<Node, VsphereError> {
        let wire = &self.wire;
        self.soap_session
            .with_session(wire, |cookie| async move {
                let r = self.soap_session.protocol().call(wire, method, this, args, cookie.as_deref()).await?;
                // vcsim withholds properties instead of failing when the session is gone.
                if method.contains("RetrieveProperties") && parse::missing_for_lack_of_session(&r.payload) {
                    return Err(wire.not_authenticated());
                }
                Ok(r.payload)
            })
            .await
    }

    /// A REST call on the session (`path` below `/rest/`, `query` without `?`): retries
    /// transient failures, and logs in again once if the session expired.
    pub(crate) async fn rest(
        &self,
        method: Method,
        path: &str,
        query: Option<&str>,
        body: Option<&serde_json::Value>,
    ) -> Result<Option<serde_json::Value>, VsphereError> {
        let req = RestRequest { method: &method, path, query, body };
        let wire = &self.wire;
        self.rest_session
            .with_session(wire, |token| async move {
                let token = token.unwrap_or_default();
                self.rest_session.protocol().call(wire, req, RestAuth::Session(&token)).await
            })
            .await
    }

    fn start_keepalive(self: &Arc<Self>) {
        let weak: Weak<Client> = Arc::downgrade(self);
        let every = self.wire.opts.keepalive_interval;
        let handle = tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(c) = weak.upgrade() else { break };
                if c.is_closed() {
                    break;
                }
                if let Err(e) = c.keepalive_once().await {
                    tracing::warn!(server = %c.server(), error = %e, "vCenter keep-alive failed");
                }
            }
        });
        *self.keepalive.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle.abort_handle());
    }

    /// Touch both sessions; log in again if the server dropped one.
    pub async fn keepalive_once(&self) -> Result<(), VsphereError> {
        let wire = &self.wire;
        self.op("keepalive", async {
            self.soap_session.keep_alive(wire, |_| async { Ok(self.current_session_key().await?.is_some()) }).await?;
            self.rest_session
                .keep_alive(wire, |token| async move {
                    let token = token.unwrap_or_default();
                    let get = RestRequest {
                        method: &Method::POST,
                        path: rest::SESSION_PATH,
                        query: Some("~action=get"),
                        body: None,
                    };
                    match self.rest_session.protocol().call(wire, get, RestAuth::Session(&token)).await {
                        Err(VsphereError::NotAuthenticated { .. }) => Ok(false),
                        Err(e) => Err(e),
                        Ok(_) => Ok(true),
                    }
                })
                .await
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
        if self.wire.close() || !self.registered.load(Ordering::SeqCst) {
            return;
        }
        if let Some(h) = self.keepalive.lock().unwrap_or_else(|e| e.into_inner()).take() {
            h.abort();
        }
        // Both ids are forgotten now, even if the logouts below do not finish.
        let rest = self.rest_session.logout(&self.wire);
        let soap = self.soap_session.logout(&self.wire);
        // Bounded: a dead server must not hold up the operator's shutdown.
        let _ = tokio::time::timeout(self.wire.opts.request_timeout, async {
            rest.await;
            soap.await;
        })
        .await;
        self.wire.counters.open_sessions.fetch_sub(1, Ordering::SeqCst);
        tracing::info!(server = %self.server(), "vCenter session closed");
    }

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
                    pause = (pause * 2).min(self.wire.opts.task_poll_max);
                }
                TaskState::Success(r) => return Ok(r),
                TaskState::Error(e) => return Err(e),
            }
        }
    }
}

impl Drop for Client {
    /// Dropped without shutdown (pool dropped, or a login cut off by its deadline): log
    /// out in the background if a runtime is still there, so the server does not keep
    /// the sessions for hours.
    fn drop(&mut self) {
        if let Some(h) = self.keepalive.lock().unwrap_or_else(|e| e.into_inner()).take() {
            h.abort();
        }
        if self.wire.close() {
            return;
        }
        if self.registered.load(Ordering::SeqCst) {
            self.wire.counters.open_sessions.fetch_sub(1, Ordering::SeqCst);
        }
        let logouts: Vec<_> =
            [self.rest_session.detached_logout(&self.wire), self.soap_session.detached_logout(&self.wire)]
                .into_iter()
                .flatten()
                .collect();
        if logouts.is_empty() {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(async move {
            for req in logouts {
                let _ = req.send().await;
            }
        });
    }
}
