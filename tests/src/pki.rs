//! A throw-away certificate authority for one test environment: it signs the
//! kube-apiserver and vcsim serving certificates and the admin client certificate, so
//! tests can verify TLS against a CA they were handed instead of turning checks off.

use std::net::IpAddr;

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// A CA whose private key never leaves this struct.
pub struct TestCa {
    /// The CA certificate (PEM), the trust anchor to hand to clients.
    pub cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").field("cert_pem", &self.cert_pem).finish_non_exhaustive()
    }
}

fn validity(params: &mut CertificateParams) {
    // Backdated a day so clock skew between processes never makes a fresh cert "not yet valid".
    let now = std::time::SystemTime::now();
    params.not_before = (now - std::time::Duration::from_secs(24 * 3600)).into();
    params.not_after = (now + std::time::Duration::from_secs(365 * 24 * 3600)).into();
}

impl TestCa {
    pub fn new(common_name: &str) -> Result<TestCa> {
        let key = KeyPair::generate().context("generating CA key")?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        validity(&mut params);
        let cert = params.self_signed(&key).context("self-signing CA")?;
        Ok(TestCa { cert_pem: cert.pem(), issuer: Issuer::new(params, key) })
    }

    /// A serving certificate for the given names and addresses. Returns (cert PEM, key PEM).
    pub fn issue_server(&self, dns_names: &[&str], ips: &[IpAddr]) -> Result<(String, String)> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, dns_names.first().copied().unwrap_or("test-server"));
        params.distinguished_name = dn;
        for name in dns_names {
            params.subject_alt_names.push(SanType::DnsName((*name).try_into().context("DNS name")?));
        }
        for ip in ips {
            params.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        self.sign(params)
    }

    /// A client certificate; Kubernetes reads CN as the user and O as the group.
    pub fn issue_client(&self, common_name: &str, organization: Option<&str>) -> Result<(String, String)> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        if let Some(org) = organization {
            dn.push(DnType::OrganizationName, org);
        }
        params.distinguished_name = dn;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        self.sign(params)
    }

    fn sign(&self, mut params: CertificateParams) -> Result<(String, String)> {
        validity(&mut params);
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().context("generating leaf key")?;
        let cert = params.signed_by(&key, &self.issuer).context("signing leaf certificate")?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// A fresh signing key pair (PEM private key, PEM public key), e.g. for service-account tokens.
pub fn key_pair_pem() -> Result<(String, String)> {
    let key = KeyPair::generate().context("generating key")?;
    Ok((key.serialize_pem(), key.public_key_pem()))
}

/// SHA-256 over the DER of the first certificate in `pem`, as colon-separated upper-case
/// hex (the format vCenter and govc use for thumbprints).
pub fn sha256_thumbprint(pem: &str) -> Result<String> {
    use sha2::Digest;
    let der = first_der(pem)?;
    let sum = sha2::Sha256::digest(&der);
    Ok(sum.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":"))
}

fn first_der(pem: &str) -> Result<Vec<u8>> {
    let begin = "-----BEGIN CERTIFICATE-----";
    let end = "-----END CERTIFICATE-----";
    let start = pem.find(begin).context("no certificate in PEM")? + begin.len();
    let stop = pem[start..].find(end).context("unterminated certificate")? + start;
    let b64: String = pem[start..stop].chars().filter(|c| !c.is_whitespace()).collect();
    base64_decode(&b64)
}

// A tiny decoder keeps a base64 crate out of the dependency list for this one use.
fn base64_decode(s: &str) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut buf = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => anyhow::bail!("invalid base64 byte {c:#x}"),
        };
        buf = (buf << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip_of_known_value() {
        assert_eq!(base64_decode("aGVsbG8gd29ybGQ=").unwrap(), b"hello world");
        assert_eq!(base64_decode("YWI=").unwrap(), b"ab");
    }

    #[test]
    fn leaf_is_signed_by_ca_and_thumbprint_is_stable() {
        let ca = TestCa::new("unit-ca").unwrap();
        let (cert, key) = ca.issue_server(&["localhost"], &["127.0.0.1".parse().unwrap()]).unwrap();
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(key.contains("PRIVATE KEY"));
        let t1 = sha256_thumbprint(&cert).unwrap();
        assert_eq!(t1.len(), 32 * 3 - 1);
        assert_eq!(t1, sha256_thumbprint(&cert).unwrap());
        assert_ne!(t1, sha256_thumbprint(&ca.cert_pem).unwrap());
    }
}
