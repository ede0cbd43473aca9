//! The legacy INI (gcfg) format: `[VirtualCenter "<server>"]` sections with
//! `datacenters`, `port`, `insecure-flag`, `ca-file`, `thumbprint`; `[Workspace]` with the
//! default placement. Names are case-insensitive, values may be quoted, `;` and `#` start
//! comments.

use std::collections::BTreeMap;

use super::lines::Lines;
use super::{ConfigError, Listed, Trust, VCenter, Workspace};

/// One line of an INI file.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Line {
    Blank,
    Comment,
    Section { name: String, sub: Option<String> },
    Key { key: String, value: String },
}

fn parse_quoted(s: &str) -> Option<(String, &str)> {
    let body = s.strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &body[i + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'b' => out.push('\u{8}'),
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

fn strip_comment(s: &str) -> Result<&str, ()> {
    let t = s.trim();
    if t.is_empty() || t.starts_with(';') || t.starts_with('#') { Ok("") } else { Err(()) }
}

fn parse_line(raw: &str, n: usize) -> Result<Line, ConfigError> {
    let bad = |what: &str| ConfigError::Parse(format!("line {n}: {what}"));
    let t = raw.trim();
    if t.is_empty() {
        return Ok(Line::Blank);
    }
    if t.starts_with(';') || t.starts_with('#') {
        return Ok(Line::Comment);
    }
    if let Some(rest) = t.strip_prefix('[') {
        let close = rest.rfind(']').ok_or_else(|| bad("section header without `]`"))?;
        strip_comment(&rest[close + 1..]).map_err(|_| bad("text after the section header"))?;
        let head = rest[..close].trim();
        let (name, sub) = match head.find(char::is_whitespace) {
            None => (head.to_string(), None),
            Some(i) => {
                let (sub, tail) = parse_quoted(head[i..].trim_start()).ok_or_else(|| bad("bad subsection name"))?;
                if !tail.trim().is_empty() {
                    return Err(bad("bad subsection name"));
                }
                (head[..i].to_string(), Some(sub))
            }
        };
        return Ok(Line::Section { name, sub });
    }
    let (key, value) = match t.split_once('=') {
        Some((k, v)) => (k.trim(), v.trim()),
        None => (t, ""),
    };
    if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(bad("expected `name = value`"));
    }
    let value = if value.starts_with('"') {
        let (v, tail) = parse_quoted(value).ok_or_else(|| bad("unterminated quoted value"))?;
        strip_comment(tail).map_err(|_| bad("text after a quoted value"))?;
        v
    } else {
        let end = value.find([';', '#']).unwrap_or(value.len());
        value[..end].trim().to_string()
    };
    Ok(Line::Key { key: key.to_ascii_lowercase(), value })
}

fn parse(lines: &[String]) -> Result<Vec<Line>, ConfigError> {
    let parsed: Vec<Line> = lines.iter().enumerate().map(|(i, l)| parse_line(l, i + 1)).collect::<Result<_, _>>()?;
    if let Some(i) = parsed.iter().position(|l| matches!(l, Line::Key { .. }))
        && !parsed[..i].iter().any(|l| matches!(l, Line::Section { .. }))
    {
        return Err(ConfigError::Parse(format!("line {}: a setting outside any [section]", i + 1)));
    }
    Ok(parsed)
}

/// A section: its header line, the line after its last setting, and the next header (or
/// the end).
#[derive(Debug, Clone)]
struct Section {
    name: String,
    sub: Option<String>,
    header: usize,
    content_end: usize,
    end: usize,
}

fn sections(parsed: &[Line]) -> Vec<Section> {
    let mut out: Vec<Section> = Vec::new();
    for (i, l) in parsed.iter().enumerate() {
        match l {
            Line::Section { name, sub } => {
                if let Some(last) = out.last_mut() {
                    last.end = i;
                }
                out.push(Section {
                    name: name.clone(),
                    sub: sub.clone(),
                    header: i,
                    content_end: i + 1,
                    end: parsed.len(),
                });
            }
            Line::Key { .. } => {
                if let Some(last) = out.last_mut() {
                    last.content_end = i + 1;
                }
            }
            _ => {}
        }
    }
    out
}

fn is_vcenter(s: &Section, server: &str) -> bool {
    s.name.eq_ignore_ascii_case("VirtualCenter") && s.sub.as_deref() == Some(server)
}

/// The file as the cloud provider sees it: sections (name lowercased, subsection) with
/// their settings, sorted (duplicated sections merge, as in gcfg).
type Model = BTreeMap<(String, Option<String>), Vec<(String, String)>>;

fn model(parsed: &[Line]) -> Model {
    let mut m: Model = BTreeMap::new();
    let mut current: Option<(String, Option<String>)> = None;
    for l in parsed {
        match l {
            Line::Section { name, sub } => {
                let key = (name.to_ascii_lowercase(), sub.clone());
                m.entry(key.clone()).or_default();
                current = Some(key);
            }
            Line::Key { key, value } => {
                if let Some(c) = &current {
                    m.entry(c.clone()).or_default().push((key.clone(), value.clone()));
                }
            }
            _ => {}
        }
    }
    for v in m.values_mut() {
        v.sort();
    }
    m
}

fn quote(v: &str) -> String {
    let mut out = String::from("\"");
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn truthy(v: &str) -> bool {
    matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on")
}

/// The settings `vc` needs in its section: (key, value) with the comparison that says
/// whether an existing value already is it.
fn wanted(vc: &VCenter, current_dcs: &[String]) -> Vec<(&'static str, String)> {
    let mut dcs: Vec<String> = current_dcs.to_vec();
    for d in &vc.datacenters {
        if !dcs.contains(d) {
            dcs.push(d.clone());
        }
    }
    let mut out = vec![("datacenters", dcs.join(",")), ("port", vc.port.to_string())];
    match &vc.trust {
        Trust::Default => out.push(("insecure-flag", "0".into())),
        Trust::Insecure => out.push(("insecure-flag", "1".into())),
        Trust::CaFile(f) => {
            out.push(("insecure-flag", "0".into()));
            out.push(("ca-file", f.clone()));
        }
        Trust::Thumbprint(t) => {
            out.push(("insecure-flag", "0".into()));
            out.push(("thumbprint", t.clone()));
        }
    }
    out
}

fn split_dcs(v: &str) -> Vec<String> {
    v.split(',').map(|d| d.trim().to_string()).filter(|d| !d.is_empty()).collect()
}

fn same(key: &str, have: &str, want: &str) -> bool {
    match key {
        "insecure-flag" => truthy(have) == truthy(want),
        "port" => have.trim().parse::<u32>().ok() == want.parse::<u32>().ok(),
        "datacenters" => split_dcs(have) == split_dcs(want),
        _ => have == want,
    }
}

/// `key = "value"`, keeping how the existing line writes the key and the `=`.
fn rewrite(line: &str, value: &str) -> String {
    match line.find('=') {
        Some(i) => format!("{} {}", line[..=i].trim_end(), quote(value)),
        None => format!("{} = {}", line.trim_end(), quote(value)),
    }
}

/// Set `settings` in the section chosen by `pick`, one line at a time, keeping every other
/// line. Returns the settings written (those already equivalent are left as they are).
fn set_keys<'a>(
    lines: &mut Lines,
    pick: &dyn Fn(&Section) -> bool,
    settings: &'a [(&'a str, String)],
) -> Result<Vec<(&'a str, String)>, ConfigError> {
    let mut written = Vec::new();
    for (key, value) in settings {
        let parsed = parse(&lines.body)?;
        let sec = sections(&parsed).into_iter().find(|s| pick(s)).expect("the section exists");
        let found = (sec.header + 1..sec.end).find(|&i| matches!(&parsed[i], Line::Key { key: k, .. } if k == key));
        match found {
            Some(i) => {
                let Line::Key { value: have, .. } = &parsed[i] else { unreachable!() };
                if !same(key, have, value) {
                    let new = rewrite(&lines.body[i], value);
                    lines.set(i, new);
                    written.push((*key, value.clone()));
                }
            }
            None => {
                lines.insert(sec.content_end, vec![format!("{key} = {}", quote(value))]);
                written.push((*key, value.clone()));
            }
        }
    }
    Ok(written)
}

fn expect_equal(after: &str, expected: &Model) -> Result<(), ConfigError> {
    let got = Lines::parse(after);
    let got = model(&parse(&got.body).map_err(|e| ConfigError::Mismatch(format!("the result does not parse: {e}")))?);
    if &got != expected {
        return Err(ConfigError::Mismatch(format!("expected {expected:?}, got {got:?}")));
    }
    Ok(())
}

fn apply_expected(m: &mut Model, section: (String, Option<String>), settings: &[(&str, String)]) {
    let entry = m.entry(section).or_default();
    for (k, v) in settings {
        entry.retain(|(ek, _)| ek != k);
        entry.push((k.to_string(), v.clone()));
    }
    entry.sort();
}

pub(super) fn add(text: &str, vc: &VCenter) -> Result<String, ConfigError> {
    let mut lines = Lines::parse(text);
    let parsed = parse(&lines.body)?;
    let before = model(&parsed);
    let secs = sections(&parsed);
    let section_key = ("virtualcenter".to_string(), Some(vc.server.clone()));
    let current_dcs = before
        .get(&section_key)
        .and_then(|kv| kv.iter().find(|(k, _)| k == "datacenters"))
        .map(|(_, v)| split_dcs(v))
        .unwrap_or_default();
    let settings = wanted(vc, &current_dcs);

    if !secs.iter().any(|s| is_vcenter(s, &vc.server)) {
        // A new section after the last vCenter section, else at the end.
        let at = secs
            .iter()
            .filter(|s| s.name.eq_ignore_ascii_case("VirtualCenter"))
            .map(|s| s.content_end)
            .next_back()
            .unwrap_or(lines.len());
        let mut new = Vec::new();
        if at > 0 {
            new.push(String::new());
        }
        new.push(format!("[VirtualCenter {}]", quote(&vc.server)));
        lines.insert(at, new);
    }
    let server = vc.server.clone();
    let written = set_keys(&mut lines, &move |s| is_vcenter(s, &server), &settings)?;

    let mut expected = before;
    apply_expected(&mut expected, section_key, &written);
    let after = lines.render();
    expect_equal(&after, &expected)?;
    Ok(after)
}

pub(super) fn remove(text: &str, server: &str) -> Result<String, ConfigError> {
    let mut lines = Lines::parse(text);
    let parsed = parse(&lines.body)?;
    let secs = sections(&parsed);
    let doomed: Vec<&Section> = secs.iter().filter(|s| is_vcenter(s, server)).collect();
    if doomed.is_empty() {
        return Ok(text.to_string());
    }
    let mut expected = model(&parsed);
    expected.remove(&("virtualcenter".to_string(), Some(server.to_string())));
    // Bottom up, so earlier line numbers stay valid. Trailing comments and blank lines of
    // a section belong to what follows it; one blank line before it goes with it.
    for s in doomed.iter().rev() {
        let from = if s.header > 0 && parsed[s.header - 1] == Line::Blank { s.header - 1 } else { s.header };
        lines.remove(from, s.content_end);
    }
    let after = lines.render();
    expect_equal(&after, &expected)?;
    Ok(after)
}

pub(super) fn listed(text: &str) -> Result<Vec<Listed>, ConfigError> {
    let lines = Lines::parse(text);
    let parsed = parse(&lines.body)?;
    let mut out: Vec<Listed> = Vec::new();
    let mut current: Option<usize> = None;
    for l in &parsed {
        match l {
            Line::Section { name, sub: Some(server) } if name.eq_ignore_ascii_case("VirtualCenter") => {
                current = Some(match out.iter().position(|v| &v.server == server) {
                    Some(i) => i,
                    None => {
                        out.push(Listed { server: server.clone(), datacenters: Vec::new() });
                        out.len() - 1
                    }
                });
            }
            Line::Section { .. } => current = None,
            Line::Key { key, value } if key == "datacenters" => {
                if let Some(i) = current {
                    out[i].datacenters = split_dcs(value);
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

fn setting(parsed: &[Line], pick: &dyn Fn(&str, Option<&str>) -> bool, key: &str) -> Option<String> {
    let mut inside = false;
    for l in parsed {
        match l {
            Line::Section { name, sub } => inside = pick(name, sub.as_deref()),
            Line::Key { key: k, value } if inside && k == key && !value.is_empty() => return Some(value.clone()),
            _ => {}
        }
    }
    None
}

pub(super) fn ca_file(text: &str) -> Option<String> {
    let lines = Lines::parse(text);
    let parsed = parse(&lines.body).ok()?;
    setting(&parsed, &|n, _| n.eq_ignore_ascii_case("Global"), "ca-file")
        .or_else(|| setting(&parsed, &|n, _| n.eq_ignore_ascii_case("VirtualCenter"), "ca-file"))
}

/// `[Global] insecure-flag` as gcfg reads a bool (`1`, `true`, `yes`, `on`).
pub(super) fn globally_insecure(text: &str) -> bool {
    let lines = Lines::parse(text);
    let Ok(parsed) = parse(&lines.body) else { return false };
    setting(&parsed, &|n, _| n.eq_ignore_ascii_case("Global"), "insecure-flag")
        .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
}

pub(super) fn workspace_server(text: &str) -> Option<String> {
    let lines = Lines::parse(text);
    let parsed = parse(&lines.body).ok()?;
    setting(&parsed, &|n, sub| n.eq_ignore_ascii_case("Workspace") && sub.is_none(), "server")
}

pub(super) fn set_workspace(text: &str, ws: &Workspace) -> Result<String, ConfigError> {
    let mut lines = Lines::parse(text);
    let parsed = parse(&lines.body)?;
    let is_ws = |s: &Section| s.name.eq_ignore_ascii_case("Workspace") && s.sub.is_none();
    if !sections(&parsed).iter().any(is_ws) {
        return Ok(text.to_string());
    }
    let settings: Vec<(&str, String)> = [
        ("server", &ws.server),
        ("datacenter", &ws.datacenter),
        ("default-datastore", &ws.default_datastore),
        ("folder", &ws.folder),
        ("resourcepool-path", &ws.resource_pool),
    ]
    .into_iter()
    .filter(|(_, v)| !v.is_empty())
    .map(|(k, v)| (k, v.clone()))
    .collect();
    let written = set_keys(&mut lines, &is_ws, &settings)?;
    let mut expected = model(&parsed);
    apply_expected(&mut expected, ("workspace".into(), None), &written);
    let after = lines.render();
    expect_equal(&after, &expected)?;
    Ok(after)
}
