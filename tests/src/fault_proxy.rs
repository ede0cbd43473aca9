//! A fault-injecting TCP proxy for tests (latency, resets, dead servers).
