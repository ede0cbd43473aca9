//! PEM certificate bundles (a ConfigMap's `ca-bundle.crt` or `ca-bundle.pem`), read and
//! edited by whole certificate: a certificate is added only when no certificate with the
//! same DER bytes is there, removed by its SHA-256 fingerprint, and every other byte of the
//! bundle (comments, other certificates, their order) stays as it was.
//!
//! A bundle holds certificates only: any other PEM block (a private key above all) is
//! refused, so a key pasted into a CA Secret by mistake is never copied into a ConfigMap
//! every pod can read.

use base64::Engine;
use sha2::{Digest, Sha256};

const BEGIN: &str = "-----BEGIN ";
const END: &str = "-----END ";
const CERTIFICATE: &str = "CERTIFICATE";

/// One certificate of a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cert {
    /// SHA-256 of the DER bytes, lowercase hex (what `openssl x509 -fingerprint -sha256`
    /// prints, without the colons).
    pub fingerprint: String,
    /// The block as it appears in the bundle it was read from (BEGIN to END line).
    pub block: String,
}

/// Why a bundle cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PemError {
    /// A block that is not a certificate (its PEM label).
    NotACertificate(String),
    /// A BEGIN line without its END line.
    Unterminated,
    /// The body is not base64 or not a DER SEQUENCE.
    Malformed(String),
}

impl std::fmt::Display for PemError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PemError::NotACertificate(label) => {
                write!(f, "holds a PEM block {label:?}: a CA bundle may hold certificates only")
            }
            PemError::Unterminated => write!(f, "has a certificate without its END line"),
            PemError::Malformed(m) => write!(f, "has a certificate that does not decode: {m}"),
        }
    }
}

impl std::error::Error for PemError {}

/// A block's position: the byte range from its BEGIN line to the end of its END line
/// (with the line break), and the certificate.
struct Located {
    start: usize,
    end: usize,
    cert: Cert,
}

fn label(line: &str, marker: &str) -> Option<String> {
    let rest = line.trim().strip_prefix(marker)?;
    Some(rest.strip_suffix("-----")?.to_string())
}

fn locate(text: &str) -> Result<Vec<Located>, PemError> {
    let mut found = Vec::new();
    let mut offset = 0;
    let mut open: Option<(usize, String)> = None;
    for line in text.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        match &mut open {
            None => {
                if let Some(l) = label(line, BEGIN) {
                    if l != CERTIFICATE {
                        return Err(PemError::NotACertificate(l));
                    }
                    open = Some((start, String::new()));
                }
            }
            Some((block_start, body)) => {
                if let Some(l) = label(line, END) {
                    if l != CERTIFICATE {
                        return Err(PemError::Malformed(format!("BEGIN CERTIFICATE ends with END {l}")));
                    }
                    let der = base64::engine::general_purpose::STANDARD
                        .decode(body.as_bytes())
                        .map_err(|e| PemError::Malformed(e.to_string()))?;
                    if der.first() != Some(&0x30) || der.len() < 64 {
                        return Err(PemError::Malformed("not a DER certificate".into()));
                    }
                    let block_start = *block_start;
                    let block = text[block_start..offset].trim_end_matches(['\r', '\n']).to_string();
                    let cert = Cert { fingerprint: hex(&Sha256::digest(&der)), block };
                    found.push(Located { start: block_start, end: offset, cert });
                    open = None;
                } else if label(line, BEGIN).is_some() {
                    return Err(PemError::Unterminated);
                } else {
                    body.extend(line.chars().filter(|c| !c.is_whitespace()));
                }
            }
        }
    }
    match open {
        Some(_) => Err(PemError::Unterminated),
        None => Ok(found),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The certificates of a bundle, in order.
pub fn certificates(text: &str) -> Result<Vec<Cert>, PemError> {
    Ok(locate(text)?.into_iter().map(|l| l.cert).collect())
}

/// `bundle` with every certificate of `add` it does not hold yet appended (in `add`'s
/// order, each once), and the fingerprints of those appended. Unchanged when all are there.
pub fn merge(bundle: &str, add: &[Cert]) -> Result<(String, Vec<String>), PemError> {
    let mut held: Vec<String> = certificates(bundle)?.into_iter().map(|c| c.fingerprint).collect();
    let mut out = bundle.to_string();
    let mut added = Vec::new();
    for cert in add {
        if held.contains(&cert.fingerprint) {
            continue;
        }
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&cert.block);
        out.push('\n');
        held.push(cert.fingerprint.clone());
        added.push(cert.fingerprint.clone());
    }
    Ok((out, added))
}

/// `bundle` without the certificates whose fingerprint is in `fingerprints`, and the
/// fingerprints removed. Unchanged when it holds none of them.
pub fn remove(bundle: &str, fingerprints: &[String]) -> Result<(String, Vec<String>), PemError> {
    let mut out = String::with_capacity(bundle.len());
    let mut removed = Vec::new();
    let mut from = 0;
    for l in locate(bundle)? {
        if fingerprints.contains(&l.cert.fingerprint) {
            out.push_str(&bundle[from..l.start]);
            from = l.end;
            removed.push(l.cert.fingerprint);
        }
    }
    out.push_str(&bundle[from..]);
    Ok((out, removed))
}

/// The first 16 hex digits, for messages.
pub fn short(fingerprint: &str) -> &str {
    &fingerprint[..fingerprint.len().min(16)]
}

/// A certificate-shaped PEM block for tests (a DER SEQUENCE in 64-column base64 lines, not a
/// real certificate); `n` varies it.
#[cfg(any(test, feature = "testing"))]
pub fn test_certificate(n: u8) -> String {
    let mut der = vec![0x30, 0x82, 0x00, 0x40];
    der.extend(std::iter::repeat_n(n, 100));
    let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
    let lines: Vec<&str> =
        b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).expect("base64 is ASCII")).collect();
    format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mk_cert(n: u8) -> String {
        test_certificate(n)
    }

    #[test]
    fn reads_certificates_with_comments_between() {
        let text = format!("# corporate root\n{}\n# vCenter\n{}", mk_cert(1), mk_cert(2));
        let certs = certificates(&text).unwrap();
        assert_eq!(certs.len(), 2);
        assert_ne!(certs[0].fingerprint, certs[1].fingerprint);
        assert_eq!(certs[0].fingerprint.len(), 64);
        assert!(certs[1].block.starts_with("-----BEGIN CERTIFICATE-----") && certs[1].block.ends_with("-----"));
        assert_eq!(certificates("").unwrap(), vec![]);
    }

    #[test]
    fn refuses_keys_and_broken_blocks() {
        let key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert_eq!(certificates(&format!("{}{key}", mk_cert(1))), Err(PemError::NotACertificate("PRIVATE KEY".into())));
        let cut = mk_cert(1).replace("-----END CERTIFICATE-----\n", "");
        assert_eq!(certificates(&cut), Err(PemError::Unterminated));
        assert!(matches!(
            certificates("-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n"),
            Err(PemError::Malformed(_))
        ));
        assert!(matches!(
            certificates("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
            Err(PemError::Malformed(_))
        ));
    }

    #[test]
    fn merge_appends_only_what_is_missing_and_keeps_every_byte() {
        let bundle = format!("# keep me\n{}", mk_cert(1));
        let add = certificates(&format!("{}{}{}", mk_cert(1), mk_cert(2), mk_cert(2))).unwrap();
        let (merged, added) = merge(&bundle, &add).unwrap();
        assert!(merged.starts_with(&bundle));
        assert_eq!(added, vec![add[1].fingerprint.clone()]);
        assert_eq!(certificates(&merged).unwrap().len(), 2);
        // Idempotent.
        let (again, none) = merge(&merged, &add).unwrap();
        assert_eq!((again.as_str(), none.len()), (merged.as_str(), 0));
        // No trailing newline in the original, and an empty bundle.
        let (joined, _) = merge(mk_cert(1).trim_end(), &add[1..2]).unwrap();
        assert_eq!(certificates(&joined).unwrap().len(), 2);
        assert_eq!(merge("", &add[..1]).unwrap().0, mk_cert(1));
    }

    #[test]
    fn remove_takes_out_whole_blocks_only() {
        let bundle = format!("# a\n{}# b\n{}# c\n", mk_cert(1), mk_cert(2));
        let two = certificates(&mk_cert(2)).unwrap()[0].fingerprint.clone();
        let (left, removed) = remove(&bundle, std::slice::from_ref(&two)).unwrap();
        assert_eq!(removed, vec![two.clone()]);
        assert_eq!(left, format!("# a\n{}# b\n# c\n", mk_cert(1)));
        assert_eq!(remove(&left, &[two]).unwrap(), (left.clone(), vec![]));
        // Merge then remove gives the original back.
        let add = certificates(&mk_cert(3)).unwrap();
        let (merged, added) = merge(&left, &add).unwrap();
        assert_eq!(remove(&merged, &added).unwrap().0, left);
    }
}
