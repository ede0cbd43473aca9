//! SOAP on the wire: one traced, redacted request/response to `/sdk`, the mapping of
//! its faults (NotAuthenticated and InvalidLogin get the server and user), retries, and
//! the SOAP session protocol (`SessionManager.Login` / `Logout`, the session cookie).

use std::sync::atomic::Ordering;
use std::time::Instant;

use reqwest::{Method, RequestBuilder};
use tracing::{Instrument, Level};

use super::config::Credentials;
use super::slot::Protocol;
use super::wire::Wire;
use crate::error::VsphereError;
use crate::redact;
use crate::soap::envelope::{self, XmlWriter};
use crate::soap::fault::SoapFault;
use crate::soap::parse::{self, MoRef, Node, ServiceContent};

const SOAP_COOKIE: &str = "vmware_soap_session";
/// Used for RetrieveServiceContent, before the server's own version is known; every
/// vCenter since 7.0 understands it.
const BOOTSTRAP_SOAP_VERSION: &str = "7.0";

/// What one SOAP exchange produced.
pub(crate) struct SoapReply {
    pub payload: Node,
    set_cookie: Option<String>,
}

/// The SOAP side of a client: the vim25 version it speaks and its SessionManager.
pub(crate) struct Soap {
    /// The `SOAPAction` header, `urn:vim25/<version>`.
    action: String,
    session_manager: MoRef,
}

impl Soap {
    /// For the first exchange, before the server's ServiceContent is known.
    pub fn bootstrap() -> Soap {
        Soap {
            action: format!("urn:vim25/{BOOTSTRAP_SOAP_VERSION}"),
            session_manager: MoRef::new("SessionManager", ""),
        }
    }

    /// Speaking the server's own API version.
    pub fn for_service(sc: &ServiceContent) -> Soap {
        let version = if sc.about.api_version.is_empty() { BOOTSTRAP_SOAP_VERSION } else { &sc.about.api_version };
        Soap { action: format!("urn:vim25/{version}"), session_manager: sc.session_manager.clone() }
    }

    /// A SOAP call with retries on transient failures (never on anything else).
    pub async fn call(
        &self,
        wire: &Wire,
        method: &str,
        this: &MoRef,
        args: &str,
        cookie: Option<&str>,
    ) -> Result<SoapReply, VsphereError> {
        let body = envelope::request(method, this, args);
        wire.with_retries("SOAP", method, || self.exchange(wire, method, this, &body, cookie)).await
    }

    /// A POST to `/sdk` with this body, untraced.
    fn request(&self, wire: &Wire, body: String, cookie: Option<&str>) -> RequestBuilder {
        let mut req = wire
            .endpoint
            .request(Method::POST, wire.endpoint.sdk(), wire.opts.request_timeout)
            .header("Content-Type", "text/xml; charset=utf-8")
            .header("SOAPAction", self.action.as_str())
            .body(body);
        if let Some(c) = cookie {
            req = req.header("Cookie", format!("{SOAP_COOKIE}={c}"));
        }
        req
    }

    /// One SOAP request/response, traced, without retries.
    async fn exchange(
        &self,
        wire: &Wire,
        method: &str,
        this: &MoRef,
        body: &str,
        cookie: Option<&str>,
    ) -> Result<SoapReply, VsphereError> {
        wire.counters.soap_round_trips.fetch_add(1, Ordering::Relaxed);
        wire.counters.call(&format!("soap:{method}"));
        let span = tracing::debug_span!(
            "vsphere.soap",
            method,
            object = %this,
            server = %wire.server(),
            status = tracing::field::Empty,
            outcome = tracing::field::Empty,
            duration_ms = tracing::field::Empty,
        );
        let started = Instant::now();
        async {
            if tracing::enabled!(Level::DEBUG) {
                let secrets = wire.secrets();
                let s: Vec<&str> = secrets.iter().map(String::as_str).collect();
                let b = redact::redact_soap(body);
                tracing::debug!(body = %redact::redact_values(&b, &s), "SOAP request");
            }
            let result = self.send(wire, body, cookie, method).await;
            let span = tracing::Span::current();
            span.record("duration_ms", started.elapsed().as_millis() as u64);
            match &result {
                Ok(_) => span.record("outcome", "ok"),
                Err(e) => span.record("outcome", tracing::field::display(e)),
            };
            tracing::debug!(outcome = if result.is_ok() { "ok" } else { "error" }, "SOAP call done");
            result
        }
        .instrument(span)
        .await
    }

    async fn send(
        &self,
        wire: &Wire,
        body: &str,
        cookie: Option<&str>,
        method: &str,
    ) -> Result<SoapReply, VsphereError> {
        let reply = wire.endpoint.send(self.request(wire, body.to_string(), cookie), method).await?;
        let (status, text) = (reply.status, reply.body);
        let set_cookie =
            reply.headers.get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).find_map(session_cookie_value);
        if tracing::enabled!(Level::DEBUG) {
            let secrets = wire.secrets();
            let mut s: Vec<&str> = secrets.iter().map(String::as_str).collect();
            if let Some(c) = &set_cookie {
                s.push(c.trim_matches('"'));
            }
            let b = redact::redact_soap(&text);
            tracing::debug!(status = status.as_u16(), body = %redact::redact_values(&b, &s), "SOAP response");
        }
        let payload = parse::parse(&text).and_then(|root| parse::body_payload(&root).cloned());
        match payload {
            Ok(p) if p.name == "Fault" => Err(map_fault(wire, SoapFault::from_node(&p), method)),
            Ok(p) if status.is_success() => Ok(SoapReply { payload: p, set_cookie }),
            _ if !status.is_success() => Err(crate::retry::classify_status(status.as_u16(), method, &text)),
            Ok(_) => unreachable!("success handled above"),
            Err(e) => Err(e),
        }
    }
}

/// A fault as a typed error; the session faults name this server and user.
fn map_fault(wire: &Wire, f: SoapFault, method: &str) -> VsphereError {
    match f.kind.as_str() {
        "NotAuthenticated" => wire.not_authenticated(),
        "InvalidLogin" => wire.auth_failed(false),
        _ => match f.into_error(method) {
            VsphereError::Transient { reason, attempts, .. } => {
                VsphereError::Transient { operation: method.to_string(), attempts, reason }
            }
            e => e,
        },
    }
}

impl Protocol for Soap {
    const NAME: &'static str = "SOAP";

    async fn login(&self, wire: &Wire, creds: &Credentials) -> Result<String, VsphereError> {
        let mut w = XmlWriter::new();
        w.text("userName", &creds.username).text("password", creds.password.expose());
        match self.call(wire, "Login", &self.session_manager, &w.into_string(), None).await {
            Ok(reply) => {
                wire.counters.logins.fetch_add(1, Ordering::Relaxed);
                reply.set_cookie.ok_or_else(|| VsphereError::protocol("Login answered without a session cookie"))
            }
            Err(e) => {
                if matches!(e, VsphereError::AuthFailed { .. }) {
                    wire.counters.login_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(server = %wire.server(), username = %creds.username, "vCenter rejected the credentials; they will not be tried again until they change");
                }
                Err(e)
            }
        }
    }

    async fn logout(&self, wire: &Wire, id: &str) {
        let body = envelope::request("Logout", &self.session_manager, "");
        match self.exchange(wire, "Logout", &self.session_manager, &body, Some(id)).await {
            Ok(_) | Err(VsphereError::NotAuthenticated { .. }) => {
                wire.counters.logouts.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => tracing::info!(server = %wire.server(), error = %e, "SOAP logout failed"),
        }
    }

    fn logout_request(&self, wire: &Wire, id: &str) -> RequestBuilder {
        self.request(wire, envelope::request("Logout", &self.session_manager, ""), Some(id))
    }
}

/// The value of the SOAP session cookie in a Set-Cookie header, as sent back later.
fn session_cookie_value(header: &str) -> Option<String> {
    let first = header.split(';').next()?.trim();
    let (name, value) = first.split_once('=')?;
    (name.trim() == SOAP_COOKIE && !value.trim().is_empty()).then(|| value.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn soap_action_follows_the_server_version() {
        assert_eq!(Soap::bootstrap().action, "urn:vim25/7.0");
        let mut sc = ServiceContent {
            root_folder: MoRef::new("Folder", "group-d1"),
            property_collector: MoRef::new("PropertyCollector", "propertyCollector"),
            session_manager: MoRef::new("SessionManager", "SessionManager"),
            search_index: None,
            authorization_manager: None,
            about: Default::default(),
        };
        assert_eq!(Soap::for_service(&sc).action, "urn:vim25/7.0");
        sc.about.api_version = "8.0.3.0".into();
        let soap = Soap::for_service(&sc);
        assert_eq!(soap.action, "urn:vim25/8.0.3.0");
        assert_eq!(soap.session_manager.value, "SessionManager");
    }
}
