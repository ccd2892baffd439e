//! Go-style durations (`2160h`, `1h1m`, `90m0s`), as cert-manager's manifests write them.

use std::time::Duration;

/// Why a text is not a Go duration (the text is quoted in each message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration")]
    Empty,
    #[error("{0:?} is negative")]
    Negative(String),
    #[error("{0:?} is missing a unit (use h, m, s, ms, us or ns)")]
    MissingUnit(String),
    #[error("{0:?} is not a duration (expected e.g. 2160h or 1h30m)")]
    NotADuration(String),
    #[error("{0:?} has a malformed number")]
    MalformedNumber(String),
    #[error("{text:?} has unknown unit {unit:?} (use h, m, s, ms, us or ns)")]
    UnknownUnit { text: String, unit: String },
    #[error("{0:?} is too large")]
    TooLarge(String),
}

/// Parses a Go duration string. Negative durations are rejected.
pub fn parse(s: &str) -> Result<Duration, DurationError> {
    let orig = s;
    let s = s.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.starts_with('-') {
        return Err(DurationError::Negative(orig.to_string()));
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    let mut total: f64 = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| DurationError::MissingUnit(orig.to_string()))?;
        if num_len == 0 {
            return Err(DurationError::NotADuration(orig.to_string()));
        }
        let n: f64 = rest[..num_len]
            .parse()
            .map_err(|_| DurationError::MalformedNumber(orig.to_string()))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let secs = match unit {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" | "μs" => 1e-6,
            "ns" => 1e-9,
            other => {
                return Err(DurationError::UnknownUnit {
                    text: orig.to_string(),
                    unit: other.to_string(),
                })
            }
        };
        total += n * secs;
    }
    if !total.is_finite() || total > 1e12 {
        return Err(DurationError::TooLarge(orig.to_string()));
    }
    Ok(Duration::from_secs_f64(total))
}

/// Formats like Go's `time.Duration.String` for whole seconds (`2160h0m0s`).
pub fn format(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        return "0s".into();
    }
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse("2160h"), Ok(Duration::from_secs(2160 * 3600)));
        assert_eq!(parse("1h1m"), Ok(Duration::from_secs(3660)));
        assert_eq!(parse("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("90m0s"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        for bad in ["", "1x", "h", "-1h", "1", "1h2"] {
            assert!(parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(format(Duration::from_secs(3660)), "1h1m0s");
        assert_eq!(format(Duration::from_secs(2160 * 3600)), "2160h0m0s");
        assert_eq!(format(Duration::from_secs(59)), "59s");
    }
}
