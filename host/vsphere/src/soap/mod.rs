//! SOAP (vim25 over `/sdk`): request envelopes, a small response tree, fault mapping.

pub mod envelope;
pub mod fault;
pub mod parse;

pub use envelope::XmlWriter;
pub use parse::{MoRef, Node};
