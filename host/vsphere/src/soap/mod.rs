//! SOAP (vim25 over `/sdk`): request envelopes, the response tree, readers for vim25
//! answers and fault mapping. Dependencies run one way: `envelope` → `tree`,
//! `fault` → `tree`, `parse` → `tree` and `fault`.

pub mod envelope;
pub mod fault;
pub mod parse;
pub(crate) mod tree;

pub use envelope::XmlWriter;
pub use tree::{MoRef, Node};
