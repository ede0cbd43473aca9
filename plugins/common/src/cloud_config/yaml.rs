//! The YAML format: a top-level `vcenter:` block mapping of entries keyed by server.
//!
//! The editor reads the block structure from indentation (a node owns the following lines
//! that are indented deeper, blank lines between them included) and only ever rewrites,
//! inserts or removes lines inside the `vcenter` section; serde_yaml checks the result.

use serde_yaml::{Mapping, Value as Yaml};

use super::lines::Lines;
use super::{ConfigError, Listed, Trust, VCenter, parse_yaml, yaml_scalar};

fn indent(s: &str) -> usize {
    s.len() - s.trim_start_matches(' ').len()
}

fn blank(s: &str) -> bool {
    s.trim().is_empty()
}

fn comment(s: &str) -> bool {
    s.trim_start().starts_with('#')
}

fn significant(s: &str) -> bool {
    !blank(s) && !comment(s)
}

fn seq_item(s: &str) -> bool {
    let t = s.trim_start();
    t == "-" || t.starts_with("- ")
}

/// End (exclusive) of the node whose key is on line `start` at indentation `ind`.
fn node_end(lines: &[String], start: usize, ind: usize, limit: usize) -> usize {
    let mut end = start + 1;
    let mut i = start + 1;
    while i < limit {
        let l = &lines[i];
        if blank(l) {
            i += 1;
            continue;
        }
        let li = indent(l);
        let belongs = li > ind || (li == ind && !comment(l) && seq_item(l));
        if !belongs {
            break;
        }
        i += 1;
        end = i;
    }
    end
}

/// `key: rest` at the start of a (trimmed) line: the key, unquoted, and what follows the
/// colon.
fn split_key(line: &str) -> Option<(String, &str)> {
    let s = line.trim_start();
    if let Some(body) = s.strip_prefix('"') {
        let mut escaped = false;
        for (i, c) in body.char_indices() {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                let key = unquote(&s[..i + 2]);
                return body[i + 1..].trim_start_matches(' ').strip_prefix(':').map(|rest| (key, rest));
            }
        }
        return None;
    }
    if let Some(body) = s.strip_prefix('\'') {
        let mut chars = body.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            if c == '\'' {
                if chars.peek().is_some_and(|(_, n)| *n == '\'') {
                    chars.next();
                    continue;
                }
                let key = unquote(&s[..i + 2]);
                return body[i + 1..].trim_start_matches(' ').strip_prefix(':').map(|rest| (key, rest));
            }
        }
        return None;
    }
    if s.is_empty() || seq_item(s) || s.starts_with(['#', '[', '{', '?', '|', '>', '&', '*', '!', '%', '@', '`']) {
        return None;
    }
    let bytes = s.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'#' && i > 0 && bytes[i - 1] == b' ' {
            return None;
        }
        if *b == b':' && (i + 1 == bytes.len() || bytes[i + 1] == b' ' || bytes[i + 1] == b'\t') {
            return Some((s[..i].trim_end().to_string(), &s[i + 1..]));
        }
    }
    None
}

/// A value and its trailing comment (`# ...`, outside quotes).
fn value_and_comment(rest: &str) -> (&str, &str) {
    let (mut in_single, mut in_double, mut escaped) = (false, false, false);
    let bytes = rest.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if in_double {
            if escaped {
                escaped = false;
            } else if *b == b'\\' {
                escaped = true;
            } else if *b == b'"' {
                in_double = false;
            }
            continue;
        }
        match b {
            b'\'' => in_single = !in_single,
            b'"' if !in_single => in_double = true,
            b'#' if !in_single && (i == 0 || bytes[i - 1] == b' ' || bytes[i - 1] == b'\t') => {
                return (rest[..i].trim(), &rest[i..]);
            }
            _ => {}
        }
    }
    (rest.trim(), "")
}

/// A scalar as written (plain, single- or double-quoted) as a string.
fn unquote(v: &str) -> String {
    let v = v.trim();
    if v.len() >= 2 && v.starts_with('\'') && v.ends_with('\'') {
        return v[1..v.len() - 1].replace("''", "'");
    }
    if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
        return serde_yaml::from_str::<String>(v).unwrap_or_else(|_| v[1..v.len() - 1].to_string());
    }
    v.to_string()
}

/// A key line inside a block mapping and the lines it owns.
#[derive(Debug, Clone)]
struct Node {
    line: usize,
    key: String,
    /// The value written on the key's line (without a comment).
    inline: String,
    end: usize,
}

/// The nodes of the block mapping occupying lines `from..to`.
fn children(lines: &[String], from: usize, to: usize) -> Result<Vec<Node>, ConfigError> {
    let Some(first) = (from..to).find(|&i| significant(&lines[i])) else { return Ok(Vec::new()) };
    let ind = indent(&lines[first]);
    let mut out = Vec::new();
    let mut i = first;
    while i < to {
        let l = &lines[i];
        if !significant(l) || indent(l) > ind {
            i += 1;
            continue;
        }
        if indent(l) < ind {
            return Err(ConfigError::Unsupported(format!("line {}: unexpected indentation", i + 1)));
        }
        let (key, rest) =
            split_key(l).ok_or_else(|| ConfigError::Unsupported(format!("line {}: expected `key:`", i + 1)))?;
        let (inline, _) = value_and_comment(rest);
        let end = node_end(lines, i, ind, to);
        out.push(Node { line: i, key, inline: inline.to_string(), end });
        i = end;
    }
    Ok(out)
}

/// The top-level `vcenter:` node.
fn vcenter_section(lines: &[String]) -> Result<Option<Node>, ConfigError> {
    let mut seen_content = false;
    for (i, l) in lines.iter().enumerate() {
        if !significant(l) || indent(l) > 0 {
            continue;
        }
        let t = l.trim_end();
        if t == "---" || t.starts_with("--- ") {
            if seen_content {
                return Err(ConfigError::Unsupported("more than one YAML document".into()));
            }
            continue;
        }
        if t == "..." {
            break;
        }
        seen_content = true;
        if let Some((key, rest)) = split_key(l)
            && key == "vcenter"
        {
            let (inline, _) = value_and_comment(rest);
            let end = node_end(lines, i, 0, lines.len());
            return Ok(Some(Node { line: i, key, inline: inline.to_string(), end }));
        }
    }
    Ok(None)
}

/// Where new top-level content goes: before a document end marker, else at the end.
fn append_point(lines: &[String]) -> usize {
    lines.iter().position(|l| l.trim_end() == "...").unwrap_or(lines.len())
}

/// The indentation step the file uses (its first indented line), else 2.
fn indent_unit(lines: &[String]) -> usize {
    lines.iter().filter(|l| significant(l)).map(|l| indent(l)).find(|&n| n > 0).unwrap_or(2)
}

fn trust_fields(trust: &Trust) -> (bool, Option<(&'static str, &str)>) {
    match trust {
        Trust::Default => (false, None),
        Trust::CaFile(f) => (false, Some(("caFile", f))),
        Trust::Thumbprint(t) => (false, Some(("thumbprint", t))),
        Trust::Insecure => (true, None),
    }
}

/// The scalar fields an entry gets: (key, YAML text, value).
fn scalar_fields(vc: &VCenter) -> Vec<(&'static str, String, Yaml)> {
    let (insecure, extra) = trust_fields(&vc.trust);
    let mut f = vec![
        ("server", yaml_scalar(&vc.server), Yaml::String(vc.server.clone())),
        ("port", vc.port.to_string(), Yaml::Number(vc.port.into())),
        ("insecureFlag", insecure.to_string(), Yaml::Bool(insecure)),
    ];
    if let Some((k, v)) = extra {
        f.push((k, yaml_scalar(v), Yaml::String(v.to_string())));
    }
    f
}

fn entry_lines(vc: &VCenter, key_indent: usize, field_indent: usize) -> Vec<String> {
    let (k, f) = (" ".repeat(key_indent), " ".repeat(field_indent));
    let mut out = vec![format!("{k}{}:", yaml_scalar(&vc.server))];
    let fields = scalar_fields(vc);
    for (key, text, _) in &fields[..3] {
        out.push(format!("{f}{key}: {text}"));
    }
    out.push(format!("{f}datacenters:"));
    out.extend(vc.datacenters.iter().map(|d| format!("{f}- {}", yaml_scalar(d))));
    for (key, text, _) in &fields[3..] {
        out.push(format!("{f}{key}: {text}"));
    }
    out
}

fn entry_matches(lines: &[String], e: &Node, server: &str) -> bool {
    if e.key == server {
        return true;
    }
    children(lines, e.line + 1, e.end)
        .map(|fields| fields.iter().any(|f| f.key == "server" && unquote(&f.inline) == server))
        .unwrap_or(false)
}

/// Datacenters an entry lists (block or flow sequence) and how.
enum DcList {
    Flow(Vec<String>),
    /// Items, the line after the last item, and the items' indentation.
    Block(Vec<String>, usize, usize),
}

fn datacenters_of(lines: &[String], field: &Node) -> DcList {
    if field.inline.starts_with('[') {
        let inner = field.inline.trim_start_matches('[').trim_end_matches(']');
        let items = inner.split(',').map(unquote).filter(|s| !s.is_empty()).collect();
        return DcList::Flow(items);
    }
    let mut items = Vec::new();
    let (mut after, mut ind) = (field.line + 1, indent(&lines[field.line]));
    for (i, l) in lines.iter().enumerate().take(field.end).skip(field.line + 1) {
        if seq_item(l) {
            let (v, _) = value_and_comment(l.trim_start()[1..].trim_start());
            items.push(unquote(v));
            after = i + 1;
            ind = indent(l);
        }
    }
    DcList::Block(items, after, ind)
}

/// One change that brings an existing entry closer to `vc`, applied; false when none is
/// left.
fn update_step(lines: &mut Lines, entry: &Node, vc: &VCenter, unit: usize) -> Result<bool, ConfigError> {
    if !entry.inline.is_empty() {
        return Err(ConfigError::Unsupported(format!(
            "line {}: the entry for {} is written in flow style",
            entry.line + 1,
            vc.server
        )));
    }
    let fields = children(&lines.body, entry.line + 1, entry.end)?;
    let field_indent =
        fields.first().map(|f| indent(&lines.body[f.line])).unwrap_or(indent(&lines.body[entry.line]) + unit);
    let pad = " ".repeat(field_indent);
    for (key, text, value) in scalar_fields(vc) {
        match fields.iter().find(|f| f.key == key) {
            Some(f) => {
                let current: Result<Yaml, _> = serde_yaml::from_str(&f.inline);
                let same = f.end == f.line + 1 && current.is_ok_and(|c| c == value);
                if !same {
                    let line = &lines.body[f.line];
                    let (_, rest) = split_key(line).expect("a field line");
                    let (_, comment) = value_and_comment(rest);
                    let comment = if comment.is_empty() { String::new() } else { format!(" {comment}") };
                    let own = " ".repeat(indent(line));
                    lines.remove(f.line + 1, f.end);
                    lines.set(f.line, format!("{own}{key}: {text}{comment}"));
                    return Ok(true);
                }
            }
            None => {
                lines.insert(entry.end, vec![format!("{pad}{key}: {text}")]);
                return Ok(true);
            }
        }
    }
    match fields.iter().find(|f| f.key == "datacenters") {
        None => {
            let mut new = vec![format!("{pad}datacenters:")];
            new.extend(vc.datacenters.iter().map(|d| format!("{pad}- {}", yaml_scalar(d))));
            lines.insert(entry.end, new);
            Ok(true)
        }
        Some(f) => match datacenters_of(&lines.body, f) {
            DcList::Flow(items) | DcList::Block(items, ..) if vc.datacenters.iter().all(|d| items.contains(d)) => {
                Ok(false)
            }
            DcList::Flow(mut items) => {
                items.extend(vc.datacenters.iter().filter(|d| !items.contains(d)).cloned().collect::<Vec<_>>());
                let own = " ".repeat(indent(&lines.body[f.line]));
                let list: Vec<String> = items.iter().map(|d| yaml_scalar(d)).collect();
                lines.set(f.line, format!("{own}datacenters: [{}]", list.join(", ")));
                Ok(true)
            }
            DcList::Block(items, after, ind) => {
                if items.is_empty() && !f.inline.is_empty() && f.inline != "null" && f.inline != "~" {
                    return Err(ConfigError::Unsupported(format!(
                        "line {}: datacenters is neither a list nor empty",
                        f.line + 1
                    )));
                }
                let own = " ".repeat(ind);
                let new: Vec<String> = vc
                    .datacenters
                    .iter()
                    .filter(|d| !items.contains(d))
                    .map(|d| format!("{own}- {}", yaml_scalar(d)))
                    .collect();
                if !f.inline.is_empty() {
                    let line_ind = " ".repeat(indent(&lines.body[f.line]));
                    lines.set(f.line, format!("{line_ind}datacenters:"));
                }
                lines.insert(after, new);
                Ok(true)
            }
        },
    }
}

/// The `vcenter` mapping of a parsed document (created if absent), for the expected result.
fn vcenter_map(doc: &mut Yaml) -> Result<&mut Mapping, ConfigError> {
    if doc.is_null() {
        *doc = Yaml::Mapping(Mapping::new());
    }
    let top = doc.as_mapping_mut().ok_or_else(|| ConfigError::Unsupported("the document is not a mapping".into()))?;
    let entry = top.entry(Yaml::String("vcenter".into())).or_insert(Yaml::Null);
    if entry.is_null() {
        *entry = Yaml::Mapping(Mapping::new());
    }
    entry.as_mapping_mut().ok_or_else(|| ConfigError::Unsupported("`vcenter` is not a mapping".into()))
}

fn check(after: &str, expected: &Yaml) -> Result<(), ConfigError> {
    let got = parse_yaml(after).map_err(|e| ConfigError::Mismatch(format!("the result does not parse: {e}")))?;
    if &got != expected {
        return Err(ConfigError::Mismatch(format!(
            "expected {}, got {}",
            serde_yaml::to_string(expected).unwrap_or_default(),
            serde_yaml::to_string(&got).unwrap_or_default()
        )));
    }
    Ok(())
}

/// The key of `server`'s entry in a parsed `vcenter` mapping.
fn parsed_key(map: &Mapping, server: &str) -> Option<Yaml> {
    map.iter()
        .find(|(k, v)| k.as_str() == Some(server) || v.get("server").and_then(Yaml::as_str) == Some(server))
        .map(|(k, _)| k.clone())
}

pub(super) fn add(text: &str, vc: &VCenter) -> Result<String, ConfigError> {
    let before = parse_yaml(text)?;
    let mut expected = before.clone();
    {
        let map = vcenter_map(&mut expected)?;
        let key = parsed_key(map, &vc.server).unwrap_or_else(|| Yaml::String(vc.server.clone()));
        let entry = map.entry(key).or_insert_with(|| Yaml::Mapping(Mapping::new()));
        if entry.is_null() {
            *entry = Yaml::Mapping(Mapping::new());
        }
        let entry = entry
            .as_mapping_mut()
            .ok_or_else(|| ConfigError::Unsupported(format!("the entry for {} is not a mapping", vc.server)))?;
        for (k, _, v) in scalar_fields(vc) {
            entry.insert(Yaml::String(k.into()), v);
        }
        let dcs = entry.entry(Yaml::String("datacenters".into())).or_insert(Yaml::Null);
        let mut list: Vec<Yaml> = dcs.as_sequence().cloned().unwrap_or_default();
        for d in &vc.datacenters {
            if !list.iter().any(|x| x.as_str() == Some(d)) {
                list.push(Yaml::String(d.clone()));
            }
        }
        *dcs = Yaml::Sequence(list);
    }

    let mut lines = Lines::parse(text);
    let unit = indent_unit(&lines.body);
    match vcenter_section(&lines.body)? {
        None => {
            let mut new = vec!["vcenter:".to_string()];
            new.extend(entry_lines(vc, unit, unit * 2));
            let at = append_point(&lines.body);
            lines.insert(at, new);
        }
        Some(sec) => {
            let entries = children(&lines.body, sec.line + 1, sec.end)?;
            let empty_inline = entries.is_empty() && ["{}", "null", "~"].contains(&sec.inline.as_str());
            if !(sec.inline.is_empty() || empty_inline) {
                return Err(ConfigError::Unsupported(format!(
                    "line {}: `vcenter` is written in flow style",
                    sec.line + 1
                )));
            }
            match entries.iter().find(|e| entry_matches(&lines.body, e, &vc.server)) {
                None if entries.is_empty() => {
                    let header = &lines.body[sec.line];
                    let (_, rest) = split_key(header).expect("the section header");
                    let (_, comment) = value_and_comment(rest);
                    let comment = if comment.is_empty() { String::new() } else { format!(" {comment}") };
                    lines.set(sec.line, format!("vcenter:{comment}"));
                    lines.insert(sec.end, entry_lines(vc, unit, unit * 2));
                }
                None => {
                    let ki = indent(&lines.body[entries[0].line]);
                    let fi = entries
                        .iter()
                        .find_map(|e| {
                            let f = (e.line + 1..e.end).find(|&i| significant(&lines.body[i]))?;
                            Some(indent(&lines.body[f]))
                        })
                        .unwrap_or(ki + unit);
                    let at = entries.last().expect("not empty").end;
                    lines.insert(at, entry_lines(vc, ki, fi));
                }
                Some(found) => {
                    let key_line = found.line;
                    for _ in 0..32 {
                        let entries =
                            children(&lines.body, sec.line + 1, node_end(&lines.body, sec.line, 0, lines.len()))?;
                        let entry = entries.iter().find(|e| e.line == key_line).expect("the entry stays put").clone();
                        if !update_step(&mut lines, &entry, vc, unit)? {
                            break;
                        }
                    }
                }
            }
        }
    }
    let after = lines.render();
    check(&after, &expected)?;
    Ok(after)
}

pub(super) fn remove(text: &str, server: &str) -> Result<String, ConfigError> {
    let before = parse_yaml(text)?;
    let mut lines = Lines::parse(text);
    let Some(sec) = vcenter_section(&lines.body)? else { return Ok(text.to_string()) };
    let entries = children(&lines.body, sec.line + 1, sec.end)?;
    let Some(entry) = entries.iter().find(|e| entry_matches(&lines.body, e, server)) else {
        if !sec.inline.is_empty() && !["{}", "null", "~"].contains(&sec.inline.as_str()) {
            return Err(ConfigError::Unsupported(format!("line {}: `vcenter` is written in flow style", sec.line + 1)));
        }
        return Ok(text.to_string());
    };
    let mut expected = before.clone();
    {
        let map = vcenter_map(&mut expected)?;
        if let Some(k) = parsed_key(map, server) {
            map.remove(&k);
        }
    }
    lines.remove(entry.line, entry.end);
    if entries.len() == 1 {
        let header = &lines.body[sec.line];
        let (_, rest) = split_key(header).expect("the section header");
        let (_, comment) = value_and_comment(rest);
        let comment = if comment.is_empty() { String::new() } else { format!(" {comment}") };
        lines.set(sec.line, format!("vcenter: {{}}{comment}"));
    }
    let after = lines.render();
    check(&after, &expected)?;
    Ok(after)
}

pub(super) fn listed(text: &str) -> Result<Vec<Listed>, ConfigError> {
    let doc = parse_yaml(text)?;
    let Some(vcenter) = doc.get("vcenter").filter(|v| !v.is_null()) else { return Ok(Vec::new()) };
    let map = vcenter.as_mapping().ok_or_else(|| ConfigError::Parse("`vcenter` is not a mapping".into()))?;
    Ok(map
        .iter()
        .map(|(k, v)| {
            let server = v
                .get("server")
                .and_then(Yaml::as_str)
                .filter(|s| !s.is_empty())
                .or(k.as_str())
                .unwrap_or_default()
                .to_string();
            let datacenters = v
                .get("datacenters")
                .and_then(Yaml::as_sequence)
                .map(|s| s.iter().filter_map(Yaml::as_str).map(String::from).collect())
                .unwrap_or_default();
            Listed { server, datacenters }
        })
        .collect())
}

pub(super) fn ca_file(text: &str) -> Option<String> {
    let doc = parse_yaml(text).ok()?;
    let nonempty = |v: Option<&Yaml>| v.and_then(Yaml::as_str).filter(|s| !s.is_empty()).map(String::from);
    nonempty(doc.get("global").and_then(|g| g.get("caFile")))
        .or_else(|| doc.get("vcenter")?.as_mapping()?.values().find_map(|v| nonempty(v.get("caFile"))))
}

/// `global.insecureFlag`.
pub(super) fn globally_insecure(text: &str) -> bool {
    parse_yaml(text).ok().and_then(|d| d.get("global")?.get("insecureFlag")?.as_bool()).unwrap_or(false)
}

#[cfg(test)]
pub(super) mod probe {
    //! Internals exposed to the module tests.
    pub fn split_key(line: &str) -> Option<(String, String)> {
        super::split_key(line).map(|(k, r)| (k, r.to_string()))
    }
    pub fn value_and_comment(rest: &str) -> (String, String) {
        let (v, c) = super::value_and_comment(rest);
        (v.to_string(), c.to_string())
    }
}
