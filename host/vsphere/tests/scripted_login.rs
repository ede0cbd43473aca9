//! Logins vcsim cannot script, against a tiny scripted HTTPS server: construction failing
//! half-way (SOAP logged in, REST refused or cut off by the login deadline) must log SOAP
//! out again (vcsim checks SOAP and REST credentials alike); a login answered with a
//! redirect must not be re-sent, password and all, to where it points.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vsm_vsphere::{ClientOptions, Credentials, RetryPolicy, ServerSpec, SessionPool, TlsPolicy, VsphereError};

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    cookie: Option<String>,
    body: String,
}

const SERVICE_CONTENT: &str = r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body><RetrieveServiceContentResponse xmlns="urn:vim25"><returnval><rootFolder type="Folder">group-d1</rootFolder><propertyCollector type="PropertyCollector">propertyCollector</propertyCollector><about><name>VMware vCenter Server</name><fullName>fake</fullName><version>8.0.3</version><build>1</build><apiType>VirtualCenter</apiType><apiVersion>8.0.3.0</apiVersion><instanceUuid>fake-uuid</instanceUuid></about><sessionManager type="SessionManager">SessionManager</sessionManager></returnval></RetrieveServiceContentResponse></soapenv:Body></soapenv:Envelope>"#;
const LOGIN: &str = r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body><LoginResponse xmlns="urn:vim25"><returnval><key>k</key><userName>u</userName></returnval></LoginResponse></soapenv:Body></soapenv:Envelope>"#;
const LOGOUT: &str = r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body><LogoutResponse xmlns="urn:vim25"></LogoutResponse></soapenv:Body></soapenv:Envelope>"#;

/// How the scripted server answers.
#[derive(Clone, Default)]
struct Script {
    /// The REST session login's status, after `rest_delay`.
    rest_status: u16,
    rest_delay: Duration,
    /// Answer the SOAP login with `307 Temporary Redirect` to this URL.
    redirect_login_to: Option<String>,
}

/// Serves SOAP like a vCenter and REST session logins, as `script` says.
fn fake_vcenter(script: Script) -> (String, String, Arc<Mutex<Vec<Seen>>>) {
    let key = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let der = key.cert.der().clone();
    let thumb = vsm_vsphere::tls::thumbprint_sha256(&der);
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der], rustls::pki_types::PrivateKeyDer::Pkcs8(key.signing_key.serialize_der().into()))
        .unwrap();
    let cfg = Arc::new(cfg);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(tcp) = tcp else { continue };
            let cfg = cfg.clone();
            let log = log.clone();
            let script = script.clone();
            std::thread::spawn(move || {
                tcp.set_read_timeout(Some(Duration::from_secs(10))).ok();
                let conn = rustls::ServerConnection::new(cfg).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                while let Some(req) = read_request(&mut tls) {
                    let login = req.body.contains("<Login ");
                    let (status, cookie, body) = match (req.method.as_str(), req.path.as_str()) {
                        ("POST", "/sdk") if req.body.contains("<RetrieveServiceContent") => {
                            (200, None, SERVICE_CONTENT)
                        }
                        ("POST", "/sdk") if login && script.redirect_login_to.is_some() => (307, None, ""),
                        ("POST", "/sdk") if login => {
                            (200, Some("vmware_soap_session=\"fake-soap-session\"; Path=/; HttpOnly"), LOGIN)
                        }
                        ("POST", "/sdk") if req.body.contains("<Logout ") => (200, None, LOGOUT),
                        ("POST", "/rest/com/vmware/cis/session") => {
                            std::thread::sleep(script.rest_delay);
                            (script.rest_status, None, "")
                        }
                        _ => (404, None, ""),
                    };
                    log.lock().unwrap().push(req);
                    let mut head =
                        format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\nContent-Type: text/xml\r\n", body.len());
                    if let Some(c) = cookie {
                        head.push_str(&format!("Set-Cookie: {c}\r\n"));
                    }
                    if status == 307 {
                        head.push_str(&format!("Location: {}\r\n", script.redirect_login_to.as_deref().unwrap_or("")));
                    }
                    head.push_str("\r\n");
                    if tls
                        .write_all(head.as_bytes())
                        .and_then(|_| tls.write_all(body.as_bytes()))
                        .and_then(|_| tls.flush())
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (addr, thumb, seen)
}

fn read_request(s: &mut impl Read) -> Option<Seen> {
    let mut r = BufReader::new(s);
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let (mut len, mut cookie) = (0usize, None);
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        match k.to_ascii_lowercase().as_str() {
            "content-length" => len = v.trim().parse().ok()?,
            "cookie" => cookie = Some(v.trim().to_string()),
            _ => {}
        }
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).ok()?;
    // BufReader may hold bytes of a pipelined next request; reqwest does not pipeline.
    Some(Seen { method, path, cookie, body: String::from_utf8_lossy(&body).into_owned() })
}

fn options() -> ClientOptions {
    ClientOptions {
        request_timeout: Duration::from_secs(5),
        retry: RetryPolicy {
            max_attempts: 2,
            min_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(20),
            ..Default::default()
        },
        ..Default::default()
    }
}

async fn half_way(rest_status: u16) -> (VsphereError, Vec<Seen>, SessionPool) {
    let (err, seen, pool) = half_way_with(rest_status, Duration::ZERO, options()).await;
    let seen = seen.lock().unwrap().clone();
    (err, seen, pool)
}

async fn half_way_with(
    rest_status: u16,
    rest_delay: Duration,
    opts: ClientOptions,
) -> (VsphereError, Arc<Mutex<Vec<Seen>>>, SessionPool) {
    let (addr, thumb, seen) = fake_vcenter(Script { rest_status, rest_delay, ..Default::default() });
    let pool = SessionPool::new(opts);
    let err = pool.client(&spec(addr, thumb)).await.unwrap_err();
    (err, seen, pool)
}

fn spec(server: String, thumb: String) -> ServerSpec {
    ServerSpec {
        server,
        credentials: Credentials::new("u", "p4ssw0rd"),
        tls: TlsPolicy { thumbprint_sha256: Some(thumb), ..Default::default() },
    }
}

fn logged_out(seen: &[Seen]) -> bool {
    seen.iter().any(|s| {
        s.body.contains("<Logout ") && s.cookie.as_deref() == Some("vmware_soap_session=\"fake-soap-session\"")
    })
}

#[tokio::test]
async fn rest_login_rejected_logs_soap_out() {
    let (err, seen, pool) = half_way(401).await;
    assert!(matches!(err, VsphereError::AuthFailed { cached: false, .. }), "{err:?}");
    assert!(logged_out(&seen), "no SOAP Logout after the REST login failed: {seen:?}");
    // Rejected once, never again with the same password.
    let rest_logins = seen.iter().filter(|s| s.path == "/rest/com/vmware/cis/session").count();
    assert_eq!(rest_logins, 1);
    assert_eq!(pool.stats().open_sessions, 0);
}

#[tokio::test]
async fn rest_unavailable_logs_soap_out() {
    let (err, seen, pool) = half_way(503).await;
    assert!(err.is_transient(), "{err:?}");
    assert!(logged_out(&seen), "no SOAP Logout after the REST login failed: {seen:?}");
    let rest_logins = seen.iter().filter(|s| s.path == "/rest/com/vmware/cis/session").count();
    assert_eq!(rest_logins, 2, "retried up to max_attempts");
    assert_eq!(pool.stats().open_sessions, 0);
    assert_eq!(pool.stats().login_failures, 0);
}

#[tokio::test]
async fn login_cut_off_by_its_deadline_logs_soap_out() {
    // The REST login answers only after the login deadline has passed.
    let opts = ClientOptions { operation_timeout: Duration::from_millis(500), ..options() };
    let (err, seen, pool) = half_way_with(200, Duration::from_secs(2), opts).await;
    assert!(matches!(err, VsphereError::Timeout { .. }), "{err:?}");
    assert_eq!(pool.stats().open_sessions, 0);
    // The SOAP session it already had is logged out in the background.
    for _ in 0..50 {
        if logged_out(&seen.lock().unwrap()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no SOAP Logout after the login timed out: {:?}", seen.lock().unwrap());
}

#[tokio::test]
async fn a_login_answered_with_a_redirect_is_not_sent_on() {
    // The place the redirect points at: it must never see a request (the login body carries
    // the password).
    let (elsewhere, _, seen_elsewhere) = fake_vcenter(Script { rest_status: 200, ..Default::default() });
    let to = format!("https://{elsewhere}/sdk");
    let (addr, thumb, seen) =
        fake_vcenter(Script { rest_status: 200, redirect_login_to: Some(to.clone()), ..Default::default() });
    let pool = SessionPool::new(options());
    let err = pool.client(&spec(addr, thumb)).await.unwrap_err();
    match &err {
        VsphereError::Protocol { message } => {
            assert!(message.contains("307") && message.contains(&to) && message.contains("not followed"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    assert!(!err.to_string().contains("p4ssw0rd"), "{err}");
    assert!(seen_elsewhere.lock().unwrap().is_empty(), "the redirect was followed");
    let logins = seen.lock().unwrap().iter().filter(|s| s.body.contains("<Login ")).count();
    assert_eq!(logins, 1, "a redirect is not a transient failure to retry");
    assert_eq!(pool.stats().open_sessions, 0);
}
