//! Redaction of secrets from traced SOAP and REST traffic.
//!
//! Everything here is pure so it can be tested exhaustively; the transport applies it
//! to every body and header before it reaches a tracing event.

use std::borrow::Cow;

/// What a redacted secret is replaced with.
pub const REDACTED: &str = "<redacted>";

/// SOAP elements whose text is always secret, wherever they appear.
const SECRET_ELEMENTS: &[&str] = &["password", "sessionId", "samlToken", "token_value"];

/// Redact a SOAP envelope: the text of `<password>` (any namespace prefix) and of other
/// secret elements, and the session `<key>` of a `UserSession` (Login answers and
/// `currentSession`/`sessionList` property values).
pub fn redact_soap(body: &str) -> String {
    let mut out = body.to_string();
    for name in SECRET_ELEMENTS {
        out = redact_element_text(&out, name);
    }
    if out.contains("UserSession") || out.contains("LoginResponse") {
        out = redact_element_text(&out, "key");
    }
    out
}

/// Replace the text content of every element with local name `name`, whatever its
/// prefix and attributes. Self-closing elements are left alone (they hold nothing).
fn redact_element_text(body: &str, name: &str) -> String {
    let mut out = String::with_capacity(body.len());
    let mut rest = body;
    while let Some(lt) = rest.find('<') {
        out.push_str(&rest[..lt]);
        let tail = &rest[lt..];
        let Some(gt) = tail.find('>') else {
            out.push_str(tail);
            return out;
        };
        let tag = &tail[..=gt];
        rest = &tail[gt + 1..];
        out.push_str(tag);
        if is_open_tag_named(tag, name) {
            // Skip to the matching close tag of the same local name.
            if let Some(close) = find_close(rest, name) {
                if close > 0 {
                    out.push_str(REDACTED);
                }
                rest = &rest[close..];
            } else {
                // Unterminated: hide everything that follows rather than leak it.
                out.push_str(REDACTED);
                return out;
            }
        }
    }
    out.push_str(rest);
    out
}

fn is_open_tag_named(tag: &str, name: &str) -> bool {
    if tag.starts_with("</") || tag.starts_with("<?") || tag.starts_with("<!") || tag.ends_with("/>") {
        return false;
    }
    let inner = &tag[1..tag.len() - 1];
    let qname = inner.split(|c: char| c.is_whitespace()).next().unwrap_or("");
    local(qname) == name
}

fn local(qname: &str) -> &str {
    qname.rsplit(':').next().unwrap_or(qname)
}

/// Byte offset in `s` of the first close tag whose local name is `name`.
fn find_close(s: &str, name: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = s[from..].find("</") {
        let at = from + i;
        let end = s[at..].find('>')? + at;
        if local(s[at + 2..end].trim()) == name {
            return Some(at);
        }
        from = end + 1;
    }
    None
}

/// Redact HTTP header values: Authorization, Cookie/Set-Cookie session cookies and the
/// REST session header.
pub fn redact_header(name: &str, value: &str) -> String {
    let n = name.to_ascii_lowercase();
    match n.as_str() {
        "authorization" | "proxy-authorization" | "vmware-api-session-id" => REDACTED.to_string(),
        "cookie" | "set-cookie" => redact_cookie_header(value),
        _ => value.to_string(),
    }
}

/// Keep cookie names and attributes, drop the values of session cookies.
fn redact_cookie_header(value: &str) -> String {
    value
        .split(';')
        .map(|part| {
            let trimmed = part.trim_start();
            let lead = &part[..part.len() - trimmed.len()];
            match trimmed.split_once('=') {
                Some((k, _)) if is_session_cookie(k.trim()) => {
                    format!("{lead}{}={REDACTED}", k.trim())
                }
                _ => part.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(";")
}

fn is_session_cookie(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n == "vmware_soap_session" || n == "vmware-api-session-id" || n.contains("session") || n.contains("token")
}

/// Redact a JSON body: values of keys that look secret (password, session, token,
/// secret), at any depth. Non-JSON bodies are returned unchanged.
pub fn redact_json(body: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(body) {
        Ok(mut v) => {
            redact_json_value(&mut v);
            v.to_string()
        }
        Err(_) => body.to_string(),
    }
}

fn redact_json_value(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                let lk = k.to_ascii_lowercase();
                if lk.contains("password") || lk.contains("secret") || lk.contains("token") || lk.contains("session") {
                    *val = serde_json::Value::String(REDACTED.into());
                } else {
                    redact_json_value(val);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact_json_value),
        _ => {}
    }
}

/// Replace every occurrence of a known secret value (the password, its XML-escaped form,
/// the session cookie, the REST session id). The safety net behind the structural rules.
pub fn redact_values<'a>(text: &'a str, secrets: &[&str]) -> Cow<'a, str> {
    let mut out = Cow::Borrowed(text);
    for s in secrets {
        // Even a very short password is hidden: garbled logs are better than a leak.
        if s.is_empty() {
            continue;
        }
        for form in [Cow::Borrowed(*s), quick_xml::escape::escape(*s)] {
            if out.contains(form.as_ref()) {
                out = Cow::Owned(out.replace(form.as_ref(), REDACTED));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soap_password_any_prefix() {
        let body = r#"<soapenv:Body><Login xmlns="urn:vim25"><_this type="SessionManager">SessionManager</_this><userName>admin</userName><password>S3cr&amp;t!</password></Login></soapenv:Body>"#;
        let r = redact_soap(body);
        assert!(!r.contains("S3cr"), "{r}");
        assert!(r.contains("<password><redacted></password>"), "{r}");
        assert!(r.contains("<userName>admin</userName>"));

        let body = r#"<urn:Login><urn:password xsi:type="xsd:string">p@ss</urn:password></urn:Login>"#;
        let r = redact_soap(body);
        assert!(!r.contains("p@ss"), "{r}");
        assert!(r.contains("</urn:password>"));
    }

    #[test]
    fn soap_session_key_in_login_response_and_property() {
        let body = r#"<LoginResponse xmlns="urn:vim25"><returnval><key>52a1-secret-key</key><userName>u</userName></returnval></LoginResponse>"#;
        let r = redact_soap(body);
        assert!(!r.contains("52a1-secret-key"), "{r}");
        let body =
            r#"<propSet><name>currentSession</name><val xsi:type="UserSession"><key>abcd-1234</key></val></propSet>"#;
        assert!(!redact_soap(body).contains("abcd-1234"));
        // Task keys are not secret and stay readable.
        let body = r#"<val xsi:type="TaskInfo"><key>task-12</key></val>"#;
        assert_eq!(redact_soap(body), body);
    }

    #[test]
    fn soap_session_id_argument() {
        let body = r#"<SessionIsActive><sessionID>x</sessionID><sessionId>5200-aaaa</sessionId></SessionIsActive>"#;
        let r = redact_soap(body);
        assert!(!r.contains("5200-aaaa"));
    }

    #[test]
    fn unterminated_password_hides_the_rest() {
        let r = redact_soap("<password>leak-me and more");
        assert!(!r.contains("leak-me"));
    }

    #[test]
    fn empty_and_self_closing_untouched() {
        assert_eq!(redact_soap("<password/>"), "<password/>");
        assert_eq!(redact_soap("<password></password>"), "<password></password>");
    }

    #[test]
    fn headers() {
        assert_eq!(redact_header("Authorization", "Basic dXNlcjpwYXNz"), REDACTED);
        assert_eq!(redact_header("vmware-api-session-id", "abc"), REDACTED);
        let c = redact_header("Set-Cookie", "vmware_soap_session=\"52ab\"; Path=/; HttpOnly; Secure");
        assert!(!c.contains("52ab"), "{c}");
        assert!(c.contains("Path=/"), "{c}");
        let c = redact_header("cookie", "other=1; vmware-api-session-id=zz99");
        assert_eq!(c, "other=1; vmware-api-session-id=<redacted>");
        assert_eq!(redact_header("Content-Type", "text/xml"), "text/xml");
    }

    #[test]
    fn json_bodies() {
        let r = redact_json(r#"{"create_spec":{"name":"n","password":"pw1"},"list":[{"session_id":"s"}]}"#);
        assert!(!r.contains("pw1") && !r.contains("\"s\""), "{r}");
        assert!(r.contains("\"name\":\"n\""));
        assert_eq!(redact_json("not json"), "not json");
    }

    #[test]
    fn value_based() {
        let r = redact_values("id=5f3e-77 and p&w p&amp;w", &["5f3e-77", "p&w", ""]);
        assert_eq!(r, "id=<redacted> and <redacted> <redacted>");
        assert!(matches!(redact_values("nothing", &["secret"]), Cow::Borrowed(_)));
    }
}
