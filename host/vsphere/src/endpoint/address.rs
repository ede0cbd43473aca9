//! Where a vCenter is: a user-supplied server address parsed once into host, port and
//! the base URL that the SOAP (`/sdk`) and REST (`/rest/...`) URLs are built on.

use reqwest::Url;

use crate::error::VsphereError;

/// A parsed server address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Address {
    /// Lower case, IPv6 without brackets.
    pub host: String,
    pub port: u16,
    /// `https://host:port/`
    base: Url,
}

impl Address {
    /// `host`, `host:port`, or an `https://` URL (its path, query and user info are ignored).
    pub fn parse(server: &str) -> Result<Address, VsphereError> {
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
        Ok(Address { host: host.trim_start_matches('[').trim_end_matches(']').to_string(), port, base })
    }

    /// `host:port` (IPv6 in brackets): the pool key and the name in errors.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The SOAP endpoint.
    pub fn sdk(&self) -> Url {
        self.base.join("sdk").expect("static path")
    }

    /// A REST path below `/rest/`.
    pub fn rest(&self, path: &str) -> Url {
        self.base.join("rest/").and_then(|u| u.join(path)).expect("paths built by this crate")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        let e = Address::parse("vc.example.com").unwrap();
        assert_eq!(e.authority(), "vc.example.com:443");
        assert_eq!(e.sdk().as_str(), "https://vc.example.com/sdk");
        let e = Address::parse("127.0.0.1:8989").unwrap();
        assert_eq!(e.authority(), "127.0.0.1:8989");
        assert_eq!(e.rest("com/vmware/cis/session").as_str(), "https://127.0.0.1:8989/rest/com/vmware/cis/session");
        let e = Address::parse("https://User:pw@VC.Example.com:8443/sdk").unwrap();
        assert_eq!(e.authority(), "vc.example.com:8443");
        assert_eq!(e.sdk().as_str(), "https://vc.example.com:8443/sdk");
        let e = Address::parse("[::1]:9443").unwrap();
        assert_eq!(e.authority(), "[::1]:9443");
        assert_eq!(e.host, "::1");
        assert!(Address::parse("http://vc").is_err());
        assert!(Address::parse("  ").is_err());
    }
}
