//! Durations as the spec writes them (`phaseDeadlines`, `health.stallTimeout`,
//! `health.stabilityWindow`): `90s`, `45m`, `1h30m`, `500ms`, the CRD's pattern
//! `^([0-9]+(ms|s|m|h))+$`. One parser for the operator and the phases.

use std::time::Duration;

/// Milliseconds of a spec duration, or why it is not one (naming the text).
pub fn parse_ms(text: &str) -> Result<u64, String> {
    let bad = || format!("{text:?} is not a duration like 90s, 2m or 1h30m");
    if text.is_empty() {
        return Err(bad());
    }
    let bytes = text.as_bytes();
    let (mut i, mut total) = (0usize, 0u64);
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return Err(bad());
        }
        let n: u64 = text[start..i].parse().map_err(|_| bad())?;
        let unit = if text[i..].starts_with("ms") {
            i += 2;
            1
        } else {
            let unit = match bytes.get(i) {
                Some(b's') => 1_000,
                Some(b'm') => 60_000,
                Some(b'h') => 3_600_000,
                _ => return Err(bad()),
            };
            i += 1;
            unit
        };
        total = n.checked_mul(unit).and_then(|v| total.checked_add(v)).ok_or_else(bad)?;
    }
    Ok(total)
}

/// A spec duration; None if malformed or empty.
pub fn parse(text: &str) -> Option<Duration> {
    parse_ms(text).ok().map(Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_the_schema_allows_and_nothing_else() {
        assert_eq!(parse("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_ms("1m500ms"), Ok(60_500));
        assert_eq!(parse_ms("0s"), Ok(0));
        for bad in ["", "m", "5", "5x", "1d", "1.5h", "-5m", "5m3", "1s ", " 1s", "99999999999999999999h"] {
            assert_eq!(parse(bad), None, "{bad:?} must be refused");
        }
        assert!(parse_ms("2x").unwrap_err().contains("\"2x\""));
    }
}
