//! The response tree: a whole XML document parsed with quick-xml into a small element
//! tree (namespace prefixes dropped, entities resolved), the SOAP `Body` payload, and
//! managed object references. Knows nothing about vim25 types or faults.

use quick_xml::events::Event;
use quick_xml::reader::Reader;

use crate::error::VsphereError;

/// A managed object reference, e.g. `Folder:group-v3`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MoRef {
    /// The managed object type (`VirtualMachine`, `Folder`, ...).
    pub type_name: String,
    /// The server-side id (`vm-42`, `group-v3`, ...).
    pub value: String,
}

impl MoRef {
    pub fn new(type_name: impl Into<String>, value: impl Into<String>) -> Self {
        MoRef { type_name: type_name.into(), value: value.into() }
    }
}

impl std::fmt::Display for MoRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.type_name, self.value)
    }
}

/// An element: local name, attributes (qualified names as written), text, children.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Node {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub text: String,
    pub children: Vec<Node>,
}

impl Node {
    pub fn attr(&self, qname: &str) -> Option<&str> {
        self.attrs.iter().find(|(k, _)| k == qname).map(|(_, v)| v.as_str())
    }

    /// The `xsi:type` (any prefix), without its namespace prefix.
    pub fn xsi_type(&self) -> Option<&str> {
        self.attrs.iter().find(|(k, _)| k.ends_with(":type")).map(|(_, v)| v.rsplit(':').next().unwrap_or(v))
    }

    pub fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }

    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    pub fn child_text(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.as_str())
    }

    /// Depth-first search for the first element with this local name.
    pub fn find(&self, name: &str) -> Option<&Node> {
        if self.name == name {
            return Some(self);
        }
        self.children.iter().find_map(|c| c.find(name))
    }

    /// This element read as a ManagedObjectReference (`type` attribute + text).
    pub fn moref(&self) -> Option<MoRef> {
        let t = self.attr("type")?;
        Some(MoRef::new(t, self.text.trim()))
    }
}

/// Parse a whole document into its root element.
pub fn parse(xml: &str) -> Result<Node, VsphereError> {
    let mut reader = Reader::from_str(xml);
    let mut stack: Vec<Node> = vec![Node::default()];
    let bad = |e: &dyn std::fmt::Display| VsphereError::protocol(format!("malformed XML: {e}"));
    loop {
        match reader.read_event().map_err(|e| bad(&e))? {
            Event::Start(e) => stack.push(element(&e).map_err(|e| bad(&e))?),
            Event::Empty(e) => {
                let n = element(&e).map_err(|e| bad(&e))?;
                stack.last_mut().expect("root sentinel").children.push(n);
            }
            Event::End(_) => {
                let n = stack.pop().expect("balanced by the reader");
                let parent = stack.last_mut().ok_or_else(|| bad(&"unbalanced end tag"))?;
                parent.children.push(n);
            }
            Event::Text(t) => {
                let top = stack.last_mut().expect("root sentinel");
                top.text.push_str(&t.xml10_content());
            }
            Event::CData(t) => {
                let top = stack.last_mut().expect("root sentinel");
                top.text.push_str(&t.into_inner());
            }
            Event::GeneralRef(r) => {
                let top = stack.last_mut().expect("root sentinel");
                if let Some(c) = r.resolve_char_ref().map_err(|e| bad(&e))? {
                    top.text.push(c);
                } else {
                    let name = r.xml10_content();
                    let v = quick_xml::escape::resolve_predefined_entity(&name)
                        .ok_or_else(|| bad(&format!("unknown entity &{name};")))?;
                    top.text.push_str(v);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if stack.len() != 1 {
        return Err(bad(&"unexpected end of document"));
    }
    let mut root = stack.pop().expect("sentinel");
    match root.children.len() {
        1 => Ok(root.children.pop().expect("one child")),
        0 => Err(bad(&"empty document")),
        _ => Err(bad(&"more than one root element")),
    }
}

fn element(e: &quick_xml::events::BytesStart<'_>) -> Result<Node, quick_xml::Error> {
    let qname = e.name();
    let full: String = String::from(qname.as_ref());
    let name = full.rsplit(':').next().unwrap_or(&full).to_string();
    let mut attrs = Vec::new();
    for a in e.attributes() {
        let a = a.map_err(quick_xml::Error::from)?;
        let k = String::from(a.key.as_ref());
        let v = a.normalized_value(quick_xml::XmlVersion::Implicit1_0)?.into_owned();
        attrs.push((k, v));
    }
    Ok(Node { name, attrs, text: String::new(), children: Vec::new() })
}

/// The first element inside `<Body>`: the `...Response` or the `Fault`.
pub fn body_payload(root: &Node) -> Result<&Node, VsphereError> {
    let body = root.child("Body").ok_or_else(|| VsphereError::protocol("SOAP envelope without Body"))?;
    body.children.first().ok_or_else(|| VsphereError::protocol("empty SOAP Body"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_attributes_and_entities() {
        let root = parse(r#"<a:Envelope xmlns:a="x"><a:Body><R xmlns:xsi="y"><v xsi:type="xsd:string">1 &amp; &#x263A;</v><m type="Folder"> group-d1 </m></R></a:Body></a:Envelope>"#).unwrap();
        let payload = body_payload(&root).unwrap();
        assert_eq!(payload.name, "R");
        assert_eq!(payload.child_text("v"), Some("1 & \u{263A}"));
        assert_eq!(payload.child("v").unwrap().xsi_type(), Some("string"));
        assert_eq!(payload.find("m").and_then(Node::moref), Some(MoRef::new("Folder", "group-d1")));
        assert_eq!(MoRef::new("Folder", "group-d1").to_string(), "Folder:group-d1");
    }

    #[test]
    fn malformed_documents() {
        assert!(parse("<a><b></a>").is_err());
        assert!(parse("").is_err());
        assert!(parse("<a>&bogus;</a>").is_err());
        assert!(body_payload(&parse("<Envelope/>").unwrap()).is_err());
    }
}
