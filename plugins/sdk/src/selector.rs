//! Kubernetes label selectors in their string form (`?labelSelector=`), parsed and matched
//! as the API server does (`k8s.io/apimachinery/pkg/labels`). The one implementation for
//! everything that filters a list without an API server: the host's plan overlay and
//! [`FakeHost`](crate::testing). Pure and dependency-free, so it also builds for the
//! components' `wasm32-wasip2`.
//!
//! The algorithm, in three steps:
//! 1. Lexing. The text becomes tokens: `(`, `)`, `,`, `!`, `=`, `==`, `!=`, `<`, `>`, and
//!    identifiers, the runs of anything else between whitespace and those symbols. `in`
//!    and `notin` are identifiers that read as operators where an operator is expected.
//! 2. Parsing. Requirements separated by commas, each one of:
//!    `key` (the label exists), `!key` (it does not), `key=value`, `key==value`,
//!    `key!=value` (an empty value is allowed: `key=`), `key in (v1,v2)`,
//!    `key notin (v1,v2)` (at least one value; empty members allowed: `(a,)`), and
//!    `key>n`, `key<n` (an integer). Keys must be qualified names (`[prefix/]name`),
//!    values label values; anything else, a trailing comma included, is an error.
//!    `=` is `in` with one value and `!=` is `notin` with one, as in apimachinery.
//! 3. Matching. Every requirement must hold. `in`: the label is present with one of the
//!    values; `notin`: absent, or none of them; `>`/`<`: present, an integer, beyond the
//!    bound. The empty selector matches everything.

use std::fmt;

use serde_json::Value;

/// A parsed label selector: the requirements that must all hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector(Vec<Requirement>);

/// One requirement on one label.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Requirement {
    key: String,
    op: Op,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Exists,
    DoesNotExist,
    In(Vec<String>),
    NotIn(Vec<String>),
    GreaterThan(i64),
    LessThan(i64),
}

/// A selector the API server would refuse (it answers 400; hosts map it to `invalid`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectorError(pub String);

impl fmt::Display for SelectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SelectorError {}

impl From<SelectorError> for crate::KubeError {
    fn from(e: SelectorError) -> Self {
        crate::KubeError::Invalid(e.0)
    }
}

impl Selector {
    /// Parse the string form; the empty string selects everything.
    pub fn parse(text: &str) -> Result<Selector, SelectorError> {
        let mut tokens = lex(text).into_iter().peekable();
        let mut requirements = Vec::new();
        if tokens.peek().is_none() {
            return Ok(Selector(requirements));
        }
        let bad = |why: String| SelectorError(format!("unable to parse label selector {text:?}: {why}"));
        loop {
            requirements.push(requirement(&mut tokens).map_err(bad)?);
            match tokens.next() {
                None => return Ok(Selector(requirements)),
                Some(Token::Comma) => {}
                Some(other) => return Err(bad(format!("found {other}, expected ',' or the end"))),
            }
        }
    }

    /// Whether labels (a JSON object of strings, or `None` for no labels) satisfy every
    /// requirement.
    pub fn matches(&self, labels: Option<&Value>) -> bool {
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.0.iter().all(|r| r.op.holds(get(&r.key)))
    }

    /// Whether an object's `metadata.labels` satisfy every requirement.
    pub fn matches_object(&self, object: &Value) -> bool {
        self.matches(object.pointer("/metadata/labels"))
    }
}

impl Op {
    fn holds(&self, value: Option<&str>) -> bool {
        let integer = || value.and_then(|v| v.parse::<i64>().ok());
        match self {
            Op::Exists => value.is_some(),
            Op::DoesNotExist => value.is_none(),
            Op::In(values) => value.is_some_and(|v| values.iter().any(|x| x == v)),
            Op::NotIn(values) => value.is_none_or(|v| !values.iter().any(|x| x == v)),
            Op::GreaterThan(bound) => integer().is_some_and(|v| v > *bound),
            Op::LessThan(bound) => integer().is_some_and(|v| v < *bound),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token<'a> {
    Ident(&'a str),
    Open,
    Close,
    Comma,
    Not,
    Equals,
    NotEquals,
    Greater,
    Less,
}

impl fmt::Display for Token<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let symbol = match self {
            Token::Ident(text) => return write!(f, "{text:?}"),
            Token::Open => "(",
            Token::Close => ")",
            Token::Comma => ",",
            Token::Not => "!",
            Token::Equals => "=",
            Token::NotEquals => "!=",
            Token::Greater => ">",
            Token::Less => "<",
        };
        write!(f, "'{symbol}'")
    }
}

/// Characters that end an identifier.
const SYMBOLS: &str = "()!=<>,";

fn lex(text: &str) -> Vec<Token<'_>> {
    let mut tokens = Vec::new();
    let mut rest = text.trim_start();
    while let Some(c) = rest.chars().next() {
        let (token, len) = match c {
            '(' => (Token::Open, 1),
            ')' => (Token::Close, 1),
            ',' => (Token::Comma, 1),
            '<' => (Token::Less, 1),
            '>' => (Token::Greater, 1),
            '=' if rest.starts_with("==") => (Token::Equals, 2),
            '=' => (Token::Equals, 1),
            '!' if rest.starts_with("!=") => (Token::NotEquals, 2),
            '!' => (Token::Not, 1),
            _ => {
                let len = rest.find(|c: char| c.is_whitespace() || SYMBOLS.contains(c)).unwrap_or(rest.len());
                (Token::Ident(&rest[..len]), len)
            }
        };
        tokens.push(token);
        rest = rest[len..].trim_start();
    }
    tokens
}

type Tokens<'a> = std::iter::Peekable<std::vec::IntoIter<Token<'a>>>;

fn shown(token: Option<&Token>) -> String {
    token.map_or_else(|| "the end".to_string(), Token::to_string)
}

fn requirement(tokens: &mut Tokens) -> Result<Requirement, String> {
    if tokens.next_if_eq(&Token::Not).is_some() {
        return Ok(Requirement { key: key(tokens.next())?, op: Op::DoesNotExist });
    }
    let key = key(tokens.next())?;
    let op = match tokens.peek() {
        None | Some(Token::Comma) => Op::Exists,
        Some(Token::Equals) => {
            tokens.next();
            Op::In(vec![exact_value(tokens)?])
        }
        Some(Token::NotEquals) => {
            tokens.next();
            Op::NotIn(vec![exact_value(tokens)?])
        }
        Some(Token::Ident("in")) => {
            tokens.next();
            Op::In(value_set(tokens)?)
        }
        Some(Token::Ident("notin")) => {
            tokens.next();
            Op::NotIn(value_set(tokens)?)
        }
        Some(Token::Greater) => {
            tokens.next();
            Op::GreaterThan(integer(tokens.next())?)
        }
        Some(Token::Less) => {
            tokens.next();
            Op::LessThan(integer(tokens.next())?)
        }
        Some(other) => return Err(format!("found {other} after {key:?}, expected an operator, ',' or the end")),
    };
    Ok(Requirement { key, op })
}

fn key(token: Option<Token>) -> Result<String, String> {
    match token {
        Some(Token::Ident(k)) if valid_key(k) => Ok(k.to_string()),
        Some(Token::Ident(k)) => Err(format!("{k:?} is not a valid label key")),
        other => Err(format!("found {}, expected a label key", shown(other.as_ref()))),
    }
}

/// The value after `=`, `==` or `!=`; nothing (the end or a comma) is the empty value.
fn exact_value(tokens: &mut Tokens) -> Result<String, String> {
    match tokens.peek() {
        None | Some(Token::Comma) => Ok(String::new()),
        Some(Token::Ident(v)) if valid_value(v) => {
            let v = v.to_string();
            tokens.next();
            Ok(v)
        }
        Some(Token::Ident(v)) => Err(format!("{v:?} is not a valid label value")),
        Some(other) => Err(format!("found {other}, expected a label value")),
    }
}

/// `(v1, v2, ...)` after `in` / `notin`: at least one member; a member may be empty.
fn value_set(tokens: &mut Tokens) -> Result<Vec<String>, String> {
    if tokens.next() != Some(Token::Open) {
        return Err("expected '(' after in/notin".into());
    }
    let (mut values, mut current): (Vec<String>, Option<String>) = (Vec::new(), None);
    loop {
        match tokens.next() {
            Some(Token::Ident(v)) if current.is_none() && valid_value(v) => current = Some(v.to_string()),
            Some(Token::Ident(v)) if current.is_none() => return Err(format!("{v:?} is not a valid label value")),
            Some(Token::Comma) => values.push(current.take().unwrap_or_default()),
            Some(Token::Close) if values.is_empty() && current.is_none() => {
                return Err("the values of in/notin cannot be empty".into());
            }
            Some(Token::Close) => {
                values.push(current.unwrap_or_default());
                return Ok(values);
            }
            other => return Err(format!("found {}, expected a value, ',' or ')'", shown(other.as_ref()))),
        }
    }
}

fn integer(token: Option<Token>) -> Result<i64, String> {
    match token {
        Some(Token::Ident(n)) => n.parse().map_err(|_| format!("{n:?} is not an integer (for '>' and '<')")),
        other => Err(format!("found {}, expected an integer", shown(other.as_ref()))),
    }
}

/// A label name (and a value's shape): 1 to 63 of `[A-Za-z0-9._-]`, alphanumeric at both
/// ends.
fn valid_name(name: &str) -> bool {
    let alnum_ends =
        name.starts_with(|c: char| c.is_ascii_alphanumeric()) && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    name.len() <= 63 && alnum_ends && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// A DNS-1123 subdomain (a key's prefix): at most 253 characters, dot-separated labels of
/// `[a-z0-9-]`, alphanumeric at both ends.
fn valid_prefix(prefix: &str) -> bool {
    let label = |l: &str| {
        !l.is_empty()
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    prefix.len() <= 253 && prefix.split('.').all(label)
}

/// A qualified name: `name` or `prefix/name`.
fn valid_key(key: &str) -> bool {
    match key.split_once('/') {
        Some((prefix, name)) => valid_prefix(prefix) && valid_name(name),
        None => valid_name(key),
    }
}

/// A label value: empty, or shaped like a name.
fn valid_value(value: &str) -> bool {
    value.is_empty() || valid_name(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn matches(selector: &str, labels: &Value) -> bool {
        Selector::parse(selector).unwrap_or_else(|e| panic!("{e}")).matches(Some(labels))
    }

    #[test]
    fn the_kubernetes_syntax_matches_as_the_api_server_does() {
        let labels = json!({"app": "cvo", "tier": "control", "role": "master", "n": "5", "e": ""});
        for (selector, want) in [
            ("", true),
            ("  ", true),
            ("app=cvo", true),
            ("app = cvo", true),
            ("app==cvo,tier=control", true),
            ("app=other", false),
            ("app!=other", true),
            ("app!=cvo", false),
            ("missing!=x", true),
            ("role", true),
            ("!role", false),
            ("!missing", true),
            ("missing", false),
            ("role in (master,worker)", true),
            ("role in(master)", true),
            ("role notin (master, worker)", false),
            ("missing notin (x)", true),
            ("missing in (x)", false),
            ("e=", true),
            ("e in (,x)", true),
            ("app in (x,)", false),
            ("n>4", true),
            ("n<5", false),
            ("app>1", false),
            ("machine.openshift.io/cluster-api-machine-role", false),
            ("!machine.openshift.io/cluster-api-machine-role", true),
        ] {
            assert_eq!(matches(selector, &labels), want, "{selector:?}");
        }
        assert!(!Selector::parse("a").unwrap().matches(None));
        assert!(Selector::parse("!a").unwrap().matches(None));
        assert!(Selector::parse("a=1").unwrap().matches_object(&json!({"metadata": {"labels": {"a": "1"}}})));
    }

    #[test]
    fn what_the_api_server_refuses_is_an_error() {
        for bad in [
            "a b",
            "a b c",
            "a=b,",
            ",a",
            "a in ()",
            "a in x",
            "a in (x y)",
            "a notin (x",
            "!",
            "!a=b",
            "a=b=c",
            "a>x",
            "a=@",
            "-a",
            "Bad_Prefix/a",
            "a/b/c",
            "a=(x)",
        ] {
            let e = Selector::parse(bad).expect_err(bad);
            assert!(e.0.contains(&format!("{bad:?}")), "{e} names the selector");
        }
        assert_eq!(
            crate::KubeError::from(SelectorError("x".into())),
            crate::KubeError::Invalid("x".into()),
            "a bad selector is an invalid request"
        );
    }

    #[test]
    fn keys_and_values_follow_the_label_rules() {
        assert!(valid_key("app"));
        assert!(valid_key("kubernetes.io/os"));
        assert!(valid_key(&"a".repeat(63)));
        assert!(!valid_key(&"a".repeat(64)));
        assert!(!valid_key("a_"));
        assert!(!valid_key("/a"));
        assert!(!valid_key("Example.com/a"));
        assert!(valid_value(""));
        assert!(valid_value("v1.2_x-y"));
        assert!(!valid_value("-v"));
    }
}
