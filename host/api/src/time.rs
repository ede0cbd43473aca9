//! [`Time`]: every point in time of the status, in one type.
//!
//! On the wire a time is an RFC 3339 string in UTC with whole seconds
//! (`2025-01-01T00:00:00Z`), as Kubernetes writes its own; in memory it is a
//! [`jiff::Timestamp`], so code compares and subtracts times instead of parsing strings.
//! A time is rounded to the second when it is made, so what the operator holds is what it
//! writes and reads back.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use jiff::{Timestamp, Unit};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A point in time with second precision; serialised as `YYYY-MM-DDTHH:MM:SSZ`. The
/// default (for records that derive `Default`) is the Unix epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time(Timestamp);

impl Time {
    /// Now, to the second.
    pub fn now() -> Time {
        Time::from(Timestamp::now())
    }

    /// The instant, for arithmetic with other [`Timestamp`]s.
    pub fn timestamp(self) -> Timestamp {
        self.0
    }

    /// How long after `earlier` this is; zero if it is not after it.
    pub fn since(self, earlier: Time) -> Duration {
        Duration::try_from(self.0.duration_since(earlier.0)).unwrap_or_default()
    }

    /// Whole seconds from `earlier` to this (negative if `earlier` is later).
    pub fn seconds_since(self, earlier: Time) -> i64 {
        self.0.duration_since(earlier.0).as_secs()
    }
}

impl From<Timestamp> for Time {
    /// Rounds to the nearest second (half away from zero).
    fn from(t: Timestamp) -> Time {
        Time(t.round(Unit::Second).unwrap_or(t))
    }
}

impl From<Time> for Timestamp {
    fn from(t: Time) -> Timestamp {
        t.0
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Precision 0: no fractional seconds, even for a time read with them.
        write!(f, "{:.0}", self.0)
    }
}

impl FromStr for Time {
    type Err = jiff::Error;
    /// Any RFC 3339 time (an offset other than `Z`, fractional seconds).
    fn from_str(s: &str) -> Result<Time, jiff::Error> {
        s.parse::<Timestamp>().map(Time::from)
    }
}

impl Serialize for Time {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Time {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Time, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(|e| serde::de::Error::custom(format!("invalid time {s:?}: {e}")))
    }
}

#[cfg(feature = "schema")]
plain_string_schema!(Time, "Time");

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Time {
        s.parse().unwrap()
    }

    #[test]
    fn times_are_written_in_utc_to_the_second() {
        assert_eq!(t("2025-01-01T00:00:00Z").to_string(), "2025-01-01T00:00:00Z");
        assert_eq!(t("2025-01-01T02:00:00+02:00").to_string(), "2025-01-01T00:00:00Z");
        assert_eq!(t("2025-01-01T00:00:00.4Z").to_string(), "2025-01-01T00:00:00Z");
        assert_eq!(t("2025-01-01T00:00:00.5Z").to_string(), "2025-01-01T00:00:01Z");
        let json = serde_json::to_string(&t("2025-06-30T12:34:56Z")).unwrap();
        assert_eq!(json, "\"2025-06-30T12:34:56Z\"");
        assert_eq!(serde_json::from_str::<Time>(&json).unwrap(), t("2025-06-30T12:34:56Z"));
        assert!(serde_json::from_str::<Time>("\"yesterday\"").unwrap_err().to_string().contains("yesterday"));
    }

    #[test]
    fn made_times_are_what_is_read_back() {
        let now = Time::now();
        assert_eq!(now.to_string().parse::<Time>().unwrap(), now);
        assert_eq!(Time::from(Timestamp::from_millisecond(1_499).unwrap()), t("1970-01-01T00:00:01Z"));
    }

    #[test]
    fn differences() {
        let (a, b) = (t("2025-01-01T00:00:00Z"), t("2025-01-01T00:01:02Z"));
        assert_eq!(b.since(a), Duration::from_secs(62));
        assert_eq!(a.since(b), Duration::ZERO);
        assert_eq!((b.seconds_since(a), a.seconds_since(b)), (62, -62));
    }
}
