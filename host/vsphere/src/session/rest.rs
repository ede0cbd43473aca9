//! REST on the wire: one traced, redacted request/response below `/rest/`, what its
//! status and body mean ([`rest_answer`]), retries, and the REST session protocol
//! (`POST`/`DELETE com/vmware/cis/session`, the `vmware-api-session-id` header).

use std::sync::atomic::Ordering;
use std::time::Instant;

use reqwest::{Method, RequestBuilder, StatusCode};
use tracing::{Instrument, Level};

use super::config::Credentials;
use super::slot::Protocol;
use super::wire::Wire;
use crate::error::VsphereError;
use crate::{redact, retry};

const SESSION_HEADER: &str = "vmware-api-session-id";
pub(crate) const SESSION_PATH: &str = "com/vmware/cis/session";

/// How a REST request authenticates.
#[derive(Clone, Copy)]
pub(crate) enum RestAuth<'a> {
    /// User and password: only to create a session.
    Basic(&'a Credentials),
    /// A session id.
    Session(&'a str),
}

/// One REST request: `path` below `/rest/`, `query` without `?`, a JSON body or none.
#[derive(Clone, Copy)]
pub(crate) struct RestRequest<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub body: Option<&'a serde_json::Value>,
}

/// The REST side of a client (it has no state of its own).
pub(crate) struct Rest;

impl Rest {
    /// A REST call with retries on transient failures (never on anything else): the
    /// `value` of the answer.
    pub async fn call(
        &self,
        wire: &Wire,
        req: RestRequest<'_>,
        auth: RestAuth<'_>,
    ) -> Result<Option<serde_json::Value>, VsphereError> {
        let call = format!("{} {}", req.method, path_template(req.path));
        wire.with_retries("REST", &call, || self.exchange(wire, req, auth)).await
    }

    /// The request, untraced.
    fn request(&self, wire: &Wire, req: RestRequest<'_>, auth: RestAuth<'_>) -> RequestBuilder {
        let mut url = wire.endpoint.rest(req.path);
        url.set_query(req.query);
        let mut r = wire.endpoint.request(req.method.clone(), url, wire.opts.request_timeout);
        r = match auth {
            RestAuth::Basic(c) => r.basic_auth(&c.username, Some(c.password.expose())),
            RestAuth::Session(t) => r.header(SESSION_HEADER, t),
        };
        if let Some(b) = req.body {
            r = r.header("Content-Type", "application/json").body(b.to_string());
        }
        r
    }

    /// One REST request/response, traced, without retries.
    async fn exchange(
        &self,
        wire: &Wire,
        req: RestRequest<'_>,
        auth: RestAuth<'_>,
    ) -> Result<Option<serde_json::Value>, VsphereError> {
        wire.counters.rest_round_trips.fetch_add(1, Ordering::Relaxed);
        let call = format!("{} {}", req.method, path_template(req.path));
        wire.counters.call(&format!("rest:{call}"));
        let span = tracing::debug_span!(
            "vsphere.rest",
            method = %req.method,
            path = %req.path,
            server = %wire.server(),
            status = tracing::field::Empty,
            outcome = tracing::field::Empty,
            duration_ms = tracing::field::Empty,
        );
        let started = Instant::now();
        async {
            let secrets = wire.secrets();
            let s: Vec<&str> = secrets.iter().map(String::as_str).collect();
            if let Some(b) = req.body
                && tracing::enabled!(Level::DEBUG)
            {
                let j = redact::redact_json(&b.to_string());
                tracing::debug!(body = %redact::redact_values(&j, &s), "REST request");
            }
            let result = async {
                let reply = wire.endpoint.send(self.request(wire, req, auth), &call).await?;
                if tracing::enabled!(Level::DEBUG) {
                    // A session-create answer is the session id itself.
                    let shown = if req.path == SESSION_PATH {
                        redact::REDACTED.to_string()
                    } else {
                        redact::redact_values(&redact::redact_json(&reply.body), &s).into_owned()
                    };
                    tracing::debug!(status = reply.status.as_u16(), body = %shown, "REST response");
                }
                rest_answer(wire.server(), reply.status, &reply.body, req.path, &call)
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
}

impl Protocol for Rest {
    const NAME: &'static str = "REST";

    async fn login(&self, wire: &Wire, creds: &Credentials) -> Result<String, VsphereError> {
        let req = RestRequest { method: &Method::POST, path: SESSION_PATH, query: None, body: None };
        match self.call(wire, req, RestAuth::Basic(creds)).await {
            Ok(Some(serde_json::Value::String(id))) if !id.is_empty() => Ok(id),
            Ok(_) => Err(VsphereError::protocol("REST session answer without a session id")),
            Err(VsphereError::NotAuthenticated { .. }) | Err(VsphereError::PermissionDenied { .. }) => {
                wire.counters.login_failures.fetch_add(1, Ordering::Relaxed);
                Err(wire.auth_failed(false))
            }
            Err(e) => Err(e),
        }
    }

    async fn logout(&self, wire: &Wire, id: &str) {
        let req = RestRequest { method: &Method::DELETE, path: SESSION_PATH, query: None, body: None };
        match self.exchange(wire, req, RestAuth::Session(id)).await {
            Ok(_) | Err(VsphereError::NotAuthenticated { .. }) => {}
            Err(e) => tracing::info!(server = %wire.server(), error = %e, "REST logout failed"),
        }
    }

    fn logout_request(&self, wire: &Wire, id: &str) -> RequestBuilder {
        let req = RestRequest { method: &Method::DELETE, path: SESSION_PATH, query: None, body: None };
        self.request(wire, req, RestAuth::Session(id))
    }
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

/// REST path with ids replaced, for per-call counters (`tagging/tag/id:*`).
fn path_template(path: &str) -> String {
    let p = path.strip_prefix("com/vmware/cis/").unwrap_or(path);
    p.split('/').map(|seg| if seg.starts_with("id:") { "id:*" } else { seg }).collect::<Vec<_>>().join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates() {
        assert_eq!(path_template("com/vmware/cis/tagging/tag/id:urn:vmomi:x"), "tagging/tag/id:*");
        assert_eq!(path_template("com/vmware/cis/session"), "session");
    }

    #[test]
    fn answers() {
        let ok = |status: u16, body: &str| {
            rest_answer("vc:443", StatusCode::from_u16(status).unwrap(), body, "com/vmware/cis/tagging/tag", "GET tag")
        };
        assert_eq!(ok(200, r#"{"value":"x"}"#).unwrap(), Some(serde_json::json!("x")));
        assert_eq!(ok(200, "").unwrap(), None);
        assert!(matches!(ok(200, "<html>"), Err(VsphereError::Protocol { .. })));
        assert!(matches!(ok(401, ""), Err(VsphereError::NotAuthenticated { .. })));
        assert!(matches!(ok(403, ""), Err(VsphereError::PermissionDenied { .. })));
        assert!(matches!(ok(404, ""), Err(VsphereError::NotFound { .. })));
        let busy = r#"{"type":"com.vmware.vapi.std.errors.resource_busy","value":{"messages":[]}}"#;
        assert!(ok(400, busy).unwrap_err().is_transient());
        let exists = r#"{"type":"com.vmware.vapi.std.errors.already_exists"}"#;
        assert!(matches!(ok(400, exists), Err(VsphereError::AlreadyExists { .. })));
        assert!(ok(503, "").unwrap_err().is_transient());
    }
}
