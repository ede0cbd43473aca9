//! Request envelopes. vCenter validates element order against the WSDL, so builders
//! emit fields in schema order; every text and attribute value is escaped.

use quick_xml::escape::escape;

use super::tree::MoRef;

const ENVELOPE_OPEN: &str = concat!(
    r#"<?xml version="1.0" encoding="UTF-8"?>"#,
    r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" "#,
    r#"xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">"#,
    "<soapenv:Body>"
);
const ENVELOPE_CLOSE: &str = "</soapenv:Body></soapenv:Envelope>";

/// Appends escaped XML to a string.
#[derive(Debug, Default)]
pub struct XmlWriter {
    buf: String,
}

impl XmlWriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// `<name>text</name>`
    pub fn text(&mut self, name: &str, text: &str) -> &mut Self {
        self.buf.push('<');
        self.buf.push_str(name);
        self.buf.push('>');
        self.buf.push_str(&escape(text));
        self.buf.push_str("</");
        self.buf.push_str(name);
        self.buf.push('>');
        self
    }

    /// `<name type="T">value</name>`: a ManagedObjectReference.
    pub fn moref(&mut self, name: &str, r: &MoRef) -> &mut Self {
        self.buf.push_str(&format!(
            "<{name} type=\"{}\">{}</{name}>",
            escape(r.type_name.as_str()),
            escape(r.value.as_str())
        ));
        self
    }

    /// `<name>` or `<name xsi:type="T">`.
    pub fn open(&mut self, name: &str, xsi_type: Option<&str>) -> &mut Self {
        match xsi_type {
            Some(t) => self.buf.push_str(&format!("<{name} xsi:type=\"{}\">", escape(t))),
            None => self.buf.push_str(&format!("<{name}>")),
        }
        self
    }

    pub fn close(&mut self, name: &str) -> &mut Self {
        self.buf.push_str(&format!("</{name}>"));
        self
    }

    pub fn bool(&mut self, name: &str, v: bool) -> &mut Self {
        self.text(name, if v { "true" } else { "false" })
    }

    pub fn into_string(self) -> String {
        self.buf
    }
}

/// A whole request: `<method xmlns="urn:vim25"><_this ...>` + `args` + `</method>`.
pub fn request(method: &str, this: &MoRef, args: &str) -> String {
    let mut w = XmlWriter::new();
    w.moref("_this", this);
    format!("{ENVELOPE_OPEN}<{method} xmlns=\"urn:vim25\">{}{args}</{method}>{ENVELOPE_CLOSE}", w.into_string())
}

/// One traversal step: from objects of `type_name`, follow property `path`, then apply
/// the named selection specs.
#[derive(Debug, Clone)]
pub struct Traversal {
    pub name: &'static str,
    pub type_name: &'static str,
    pub path: &'static str,
    pub select: Vec<&'static str>,
}

/// A PropertyFilterSpec: which properties of which types, starting where, following what.
#[derive(Debug, Clone)]
pub struct FilterSpec {
    pub props: Vec<(String, Vec<String>)>,
    pub start: MoRef,
    /// Whether the start object itself is reported.
    pub include_start: bool,
    pub traversals: Vec<Traversal>,
}

impl FilterSpec {
    /// Properties of a single object.
    pub fn object(obj: &MoRef, props: &[&str]) -> Self {
        FilterSpec {
            props: vec![(obj.type_name.clone(), props.iter().map(|p| p.to_string()).collect())],
            start: obj.clone(),
            include_start: true,
            traversals: vec![],
        }
    }
}

/// Body of RetrievePropertiesEx (after `_this`).
pub fn retrieve_properties_ex(spec: &FilterSpec, max_objects: Option<u32>) -> String {
    let mut w = XmlWriter::new();
    w.open("specSet", None);
    for (ty, paths) in &spec.props {
        w.open("propSet", None).text("type", ty);
        if paths.is_empty() {
            w.bool("all", true);
        }
        for p in paths {
            w.text("pathSet", p);
        }
        w.close("propSet");
    }
    w.open("objectSet", None).moref("obj", &spec.start).bool("skip", !spec.include_start);
    // Every traversal is defined once, on the start object, so names can refer to each
    // other (recursion through folders); at each object only those whose type matches
    // apply.
    for t in &spec.traversals {
        w.open("selectSet", Some("TraversalSpec"))
            .text("name", t.name)
            .text("type", t.type_name)
            .text("path", t.path)
            .bool("skip", false);
        for s in &t.select {
            w.open("selectSet", None).text("name", s).close("selectSet");
        }
        w.close("selectSet");
    }
    w.close("objectSet");
    w.close("specSet");
    w.open("options", None);
    if let Some(m) = max_objects {
        w.text("maxObjects", &m.to_string());
    }
    w.close("options");
    w.into_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::soap::tree::parse;

    #[test]
    fn escapes_text_and_attributes() {
        let this = MoRef::new("Folder", "group-\"v3\"");
        let mut w = XmlWriter::new();
        w.text("name", "a<b>&'c\"");
        let body = request("CreateFolder", &this, &w.into_string());
        assert!(body.contains("<name>a&lt;b&gt;&amp;&apos;c&quot;</name>"), "{body}");
        assert!(body.contains(r#"<_this type="Folder">group-&quot;v3&quot;</_this>"#), "{body}");
        // And it round-trips through the parser.
        let root = parse(&body).unwrap();
        let m = root.find("Body").unwrap().children[0].clone();
        assert_eq!(m.name, "CreateFolder");
        assert_eq!(m.child_text("name"), Some("a<b>&'c\""));
        assert_eq!(m.child("_this").unwrap().moref().unwrap(), this);
    }

    #[test]
    fn property_filter_in_schema_order() {
        let spec = FilterSpec {
            props: vec![("Folder".into(), vec!["name".into(), "parent".into()]), ("Datacenter".into(), vec![])],
            start: MoRef::new("Folder", "group-d1"),
            include_start: true,
            traversals: vec![Traversal {
                name: "folder",
                type_name: "Folder",
                path: "childEntity",
                select: vec!["folder"],
            }],
        };
        let body = retrieve_properties_ex(&spec, Some(500));
        let want = concat!(
            "<specSet><propSet><type>Folder</type><pathSet>name</pathSet><pathSet>parent</pathSet></propSet>",
            "<propSet><type>Datacenter</type><all>true</all></propSet>",
            "<objectSet><obj type=\"Folder\">group-d1</obj><skip>false</skip>",
            "<selectSet xsi:type=\"TraversalSpec\"><name>folder</name><type>Folder</type><path>childEntity</path><skip>false</skip>",
            "<selectSet><name>folder</name></selectSet></selectSet></objectSet></specSet>",
            "<options><maxObjects>500</maxObjects></options>"
        );
        assert_eq!(body, want);
    }
}
