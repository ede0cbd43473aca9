//! vCenter client.
