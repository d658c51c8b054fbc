//! Durations on the command line: `30s`, `5m`, `1h` or plain seconds.

use std::time::Duration;

/// `30s`, `5m`, `1h`, `90` (seconds), with an optional leading `-` (`-10m`
/// mints an expired token), in seconds.
pub(crate) fn parse_ttl(text: &str) -> Result<i64, String> {
    let bad = || format!("`{text}` is not a duration like 30s, 5m, 1h or -10m");
    let (negative, rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let seconds = seconds(rest)
        .and_then(|s| i64::try_from(s).ok())
        .ok_or_else(bad)?;
    Ok(if negative { -seconds } else { seconds })
}

/// `30s`, `5m`, `1h` or plain seconds; never negative.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    seconds(text)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("`{text}` is not a duration like 30s, 5m or 1h"))
}

/// Digits, then `s`, `m`, `h` or nothing (seconds), as seconds; `None` when
/// the text is not that or overflows.
fn seconds(text: &str) -> Option<u64> {
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return None,
    };
    digits.parse::<u64>().ok()?.checked_mul(scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl() {
        assert_eq!(parse_ttl("30s"), Ok(30));
        assert_eq!(parse_ttl("5m"), Ok(300));
        assert_eq!(parse_ttl("1h"), Ok(3600));
        assert_eq!(parse_ttl("90"), Ok(90));
        assert_eq!(parse_ttl("-10m"), Ok(-600));
        for bad in ["", "-", "m", "5d", "1.5h", "--5m", "5 m", "99999999999999999999h"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
        // Past i64 seconds, though it fits u64.
        assert!(parse_ttl("9223372036854775808").is_err());
        assert_eq!(parse_ttl("9223372036854775807"), Ok(i64::MAX));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("1d").is_err());
        assert!(parse_duration("").is_err());
    }
}
