//! Minimal raw vCenter calls (SOAP login, REST tag category) used to prove a simulator is
//! reachable and enforces its credentials. Not a vSphere client: that lives in `vsm-vsphere`.

use std::time::Duration;

use anyhow::{Context, Result, bail};

/// An HTTPS client that trusts exactly `ca_pem` (no system roots), or, with `None`, only the
/// platform's default roots (which never include a test CA).
pub fn https_client(ca_pem: Option<&str>) -> Result<reqwest::Client> {
    let mut b = reqwest::Client::builder().timeout(Duration::from_secs(60));
    if let Some(pem) = ca_pem {
        b = b.tls_certs_only([reqwest::Certificate::from_pem(pem.as_bytes())?]);
    }
    Ok(b.build()?)
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&apos;")
}

fn envelope(body: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:vim25="urn:vim25"><soapenv:Body>{body}</soapenv:Body></soapenv:Envelope>"#
    )
}

/// Text of the first `<tag>...</tag>` element (namespace prefixes ignored), if any.
pub fn xml_text<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let mut rest = xml;
    while let Some(i) = rest.find('<') {
        rest = &rest[i + 1..];
        let end = rest.find('>')?;
        let head = &rest[..end];
        let name = head.split_whitespace().next().unwrap_or("");
        let local = name.rsplit(':').next().unwrap_or(name);
        if local == tag && !head.ends_with('/') {
            let body = &rest[end + 1..];
            let close = body.find("</")?;
            return Some(&body[..close]);
        }
    }
    None
}

async fn soap(
    http: &reqwest::Client,
    url: &str,
    cookie: Option<&str>,
    body: &str,
) -> Result<(u16, String, Option<String>)> {
    let mut req = http
        .post(url)
        .header("Content-Type", "text/xml; charset=utf-8")
        .header("SOAPAction", "urn:vim25/8.0.3.0")
        .body(envelope(body));
    if let Some(c) = cookie {
        req = req.header("Cookie", c);
    }
    let resp = req.send().await.with_context(|| format!("POST {url}"))?;
    let status = resp.status().as_u16();
    let cookie = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("vmware_soap_session="))
        .map(|v| v.split(';').next().unwrap_or(v).to_string());
    Ok((status, resp.text().await?, cookie))
}

/// The outcome of a SOAP `Login`.
#[derive(Debug)]
pub enum SoapLogin {
    /// Logged in; the session cookie (`vmware_soap_session=...`) and the user name vCenter reports.
    Ok { cookie: String, user: String },
    /// A SOAP fault, e.g. "Login failure" for bad credentials.
    Fault(String),
}

/// `RetrieveServiceContent` then `SessionManager.Login` with raw XML.
pub async fn soap_login(http: &reqwest::Client, sdk_url: &str, user: &str, password: &str) -> Result<SoapLogin> {
    let (status, body, _) = soap(
        http,
        sdk_url,
        None,
        r#"<vim25:RetrieveServiceContent><vim25:_this type="ServiceInstance">ServiceInstance</vim25:_this></vim25:RetrieveServiceContent>"#,
    )
    .await?;
    if status != 200 {
        bail!("RetrieveServiceContent: HTTP {status}: {body}");
    }
    let session_manager = xml_text(&body, "sessionManager").context("no sessionManager in ServiceContent")?.to_string();
    let login = format!(
        r#"<vim25:Login><vim25:_this type="SessionManager">{}</vim25:_this><vim25:userName>{}</vim25:userName><vim25:password>{}</vim25:password></vim25:Login>"#,
        xml_escape(&session_manager),
        xml_escape(user),
        xml_escape(password)
    );
    let (status, body, cookie) = soap(http, sdk_url, None, &login).await?;
    if let Some(fault) = xml_text(&body, "faultstring") {
        return Ok(SoapLogin::Fault(fault.to_string()));
    }
    if status != 200 {
        bail!("Login: HTTP {status}: {body}");
    }
    let cookie = cookie.context("Login succeeded without a vmware_soap_session cookie")?;
    let user = xml_text(&body, "userName").unwrap_or_default().to_string();
    Ok(SoapLogin::Ok { cookie, user })
}

/// `SearchIndex.FindByInventoryPath` in a logged-in session: the managed object reference
/// (`type:value`) at `path`, or `None` when nothing is there.
pub async fn find_by_inventory_path(
    http: &reqwest::Client,
    sdk_url: &str,
    cookie: &str,
    path: &str,
) -> Result<Option<String>> {
    let body = format!(
        r#"<vim25:FindByInventoryPath><vim25:_this type="SearchIndex">SearchIndex</vim25:_this><vim25:inventoryPath>{}</vim25:inventoryPath></vim25:FindByInventoryPath>"#,
        xml_escape(path)
    );
    let (status, body, _) = soap(http, sdk_url, Some(cookie), &body).await?;
    if status != 200 {
        bail!("FindByInventoryPath {path}: HTTP {status}: {body}");
    }
    let Some(start) = body.find("<returnval") else { return Ok(None) };
    let head = &body[start..];
    let ty = head.split("type=\"").nth(1).and_then(|r| r.split('"').next()).unwrap_or("");
    Ok(xml_text(head, "returnval").map(|v| format!("{ty}:{v}")))
}

/// `https://host:port` from `https://host:port/sdk`.
pub fn base_url(sdk_url: &str) -> &str {
    sdk_url.strip_suffix("/sdk").unwrap_or(sdk_url)
}

/// `POST /rest/com/vmware/cis/session` with basic auth; returns the session id, or the HTTP
/// status when the server refuses.
pub async fn rest_login(
    http: &reqwest::Client,
    sdk_url: &str,
    user: &str,
    password: &str,
) -> Result<Result<String, u16>> {
    let resp = http
        .post(format!("{}/rest/com/vmware/cis/session", base_url(sdk_url)))
        .basic_auth(user, Some(password))
        .send()
        .await?;
    if !resp.status().is_success() {
        return Ok(Err(resp.status().as_u16()));
    }
    let v: serde_json::Value = resp.json().await?;
    Ok(Ok(v["value"].as_str().context("session response without value")?.to_string()))
}

/// Creates a tag category through the REST API; returns its id (`urn:vmomi:InventoryServiceCategory:...`).
pub async fn rest_create_category(http: &reqwest::Client, sdk_url: &str, session: &str, name: &str) -> Result<String> {
    let body = serde_json::json!({"create_spec": {
        "name": name, "description": "created by vsm-testenv", "cardinality": "SINGLE", "associable_types": [],
    }});
    let resp = http
        .post(format!("{}/rest/com/vmware/cis/tagging/category", base_url(sdk_url)))
        .header("vmware-api-session-id", session)
        .json(&body)
        .send()
        .await?;
    let status = resp.status();
    let text = resp.text().await?;
    if !status.is_success() {
        bail!("create category: HTTP {status}: {text}");
    }
    let v: serde_json::Value = serde_json::from_str(&text)?;
    Ok(v["value"].as_str().context("category response without value")?.to_string())
}

/// Ids of all tag categories.
pub async fn rest_list_categories(http: &reqwest::Client, sdk_url: &str, session: &str) -> Result<Vec<String>> {
    let resp = http
        .get(format!("{}/rest/com/vmware/cis/tagging/category", base_url(sdk_url)))
        .header("vmware-api-session-id", session)
        .send()
        .await?;
    let status = resp.status();
    if !status.is_success() {
        bail!("list categories: HTTP {status}");
    }
    let v: serde_json::Value = resp.json().await?;
    Ok(v["value"].as_array().context("no value array")?.iter().filter_map(|x| x.as_str().map(String::from)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_text_ignores_prefixes_and_attributes() {
        let x = r#"<a:root><b:sessionManager type="SessionManager">SessionManager</b:sessionManager><x/></a:root>"#;
        assert_eq!(xml_text(x, "sessionManager"), Some("SessionManager"));
        assert_eq!(xml_text(x, "missing"), None);
        assert_eq!(xml_escape("a<b&'"), "a&lt;b&amp;&apos;");
    }
}
