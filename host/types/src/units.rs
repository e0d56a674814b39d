//! Human units in manifests: sizes like `64MiB` and durations like `500ms`, or plain
//! integers (bytes, milliseconds).

use serde::{de, Deserialize, Deserializer};
use std::time::Duration;

#[derive(Deserialize)]
#[serde(untagged)]
enum IntOrText {
    Int(i64),
    Text(String),
}

/// Parses `123`, `64KiB`, `64 MiB`, `1GiB`, `10MB` into bytes.
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit() && c != '_').unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num: u64 =
        num.replace('_', "").parse().map_err(|_| format!("`{text}` is not a size; write e.g. `64MiB` or `1048576`"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => return Err(format!("unknown size unit `{other}` in `{text}`; use B, KiB, MiB, GiB, KB, MB or GB")),
    };
    num.checked_mul(mult).ok_or_else(|| format!("size `{text}` is too large"))
}

pub(crate) fn size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match IntOrText::deserialize(d)? {
        IntOrText::Int(n) => u64::try_from(n).map(Some).map_err(|_| de::Error::custom("a size cannot be negative")),
        IntOrText::Text(s) => parse_size(&s).map(Some).map_err(de::Error::custom),
    }
}

pub(crate) fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    match IntOrText::deserialize(d)? {
        IntOrText::Int(n) => u64::try_from(n)
            .map(|ms| Some(Duration::from_millis(ms)))
            .map_err(|_| de::Error::custom("a duration cannot be negative")),
        IntOrText::Text(s) => humantime::parse_duration(&s).map(Some).map_err(|e| {
            de::Error::custom(format!("`{s}` is not a duration ({e}); write e.g. `500ms`, `30s` or `2m`"))
        }),
    }
}

/// Microseconds since the Unix epoch as RFC 3339 (UTC, whole seconds), for JSON.
pub fn rfc3339(us: u64) -> String {
    format!("{}Z", utc(us).replace(' ', "T"))
}

/// Microseconds since the Unix epoch as `YYYY-MM-DD HH:MM:SS` (UTC), for people.
pub fn utc(us: u64) -> String {
    let secs = (us / 1_000_000) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}", rem / 3600, (rem % 3600) / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_and_decimal_units() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("64 MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1_000"), Ok(1000));
        assert_eq!(parse_size("2KB"), Ok(2000));
        assert!(parse_size("12 parsecs").unwrap_err().contains("unknown size unit"));
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("99999999999999GiB").unwrap_err().contains("too large"));
    }
}
