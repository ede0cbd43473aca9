//! Durations as the migration spec writes them: `30s`, `2m`, `1h30m`, `500ms` (the CRD's
//! pattern `^([0-9]+(ms|s|m|h))+$`).

/// Milliseconds of a spec duration, or why it is not one: the API crate's parser, the one
/// the operator uses too.
pub use vsm_sdk::spec::duration::parse_ms;

/// A spec duration, or `default_ms` when it is not set.
pub fn or_default(text: Option<&str>, default_ms: u64) -> Result<u64, String> {
    match text {
        None => Ok(default_ms),
        Some(t) => parse_ms(t),
    }
}

/// `2m30s`-style text for messages.
pub fn format_ms(ms: u64) -> String {
    let secs = ms / 1000;
    match (secs / 3600, (secs % 3600) / 60, secs % 60) {
        (0, 0, 0) => format!("{ms}ms"),
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, 0, 0) => format!("{h}h"),
        (h, m, _) => format!("{h}h{m}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_durations_parse() {
        assert_eq!(parse_ms("90s"), Ok(90_000));
        assert_eq!(parse_ms("2m"), Ok(120_000));
        assert_eq!(parse_ms("1h30m"), Ok(5_400_000));
        assert_eq!(parse_ms("500ms"), Ok(500));
        assert_eq!(parse_ms("1m500ms"), Ok(60_500));
        assert_eq!(parse_ms("0s"), Ok(0));
        for bad in ["", "5", "m", "1d", "1.5m", "-1s", "1s ", "99999999999999999999h"] {
            assert!(parse_ms(bad).is_err(), "{bad:?} must be refused");
        }
        assert_eq!(or_default(None, 7), Ok(7));
        assert!(parse_ms("2x").unwrap_err().contains("\"2x\""));
    }

    #[test]
    fn formatting() {
        assert_eq!(format_ms(400), "400ms");
        assert_eq!(format_ms(45_000), "45s");
        assert_eq!(format_ms(120_000), "2m");
        assert_eq!(format_ms(150_000), "2m30s");
        assert_eq!(format_ms(5_400_000), "1h30m");
    }
}
