//! Time as microseconds since the Unix epoch, rendered as RFC 3339 (UTC) in the API.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Microseconds since 1970-01-01T00:00:00Z.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn now() -> Timestamp {
        let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Timestamp(since.as_micros() as i64)
    }

    pub fn from_secs_f64(secs: f64) -> Timestamp {
        Timestamp((secs * 1e6).round() as i64)
    }

    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e6
    }

    pub fn micros(self) -> i64 {
        self.0
    }

    /// Formats as `2024-11-05T11:10:06.123456Z` (fraction omitted when zero).
    pub fn to_rfc3339(self) -> String {
        let secs = self.0.div_euclid(1_000_000);
        let micros = self.0.rem_euclid(1_000_000);
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        let (hh, mm, ss) = (sod / 3600, (sod % 3600) / 60, sod % 60);
        if micros == 0 { format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z") } else { format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{micros:06}Z") }
    }

    /// Parses RFC 3339 (`2024-11-05T11:10:06Z`, with optional fraction and offset), or a bare date
    /// `2024-11-05` (midnight UTC).
    pub fn parse_rfc3339(text: &str) -> Result<Timestamp, String> {
        let bad = || format!("{text:?} is not an RFC 3339 timestamp such as 2024-11-05T11:10:06Z");
        let s = text.trim();
        let b = s.as_bytes();
        if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
            return Err(bad());
        }
        let num = |r: std::ops::Range<usize>| -> Result<i64, String> { s.get(r).filter(|p| p.bytes().all(|c| c.is_ascii_digit())).and_then(|p| p.parse().ok()).ok_or_else(bad) };
        let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
            return Err(bad());
        }
        let days = days_from_civil(y, mo as u32, d as u32);
        if b.len() == 10 {
            return Ok(Timestamp(days * 86_400 * 1_000_000));
        }
        if b.len() < 19 || !(b[10] == b'T' || b[10] == b't' || b[10] == b' ') || b[13] != b':' || b[16] != b':' {
            return Err(bad());
        }
        let (hh, mi, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if hh > 23 || mi > 59 || ss > 60 {
            return Err(bad());
        }
        let mut rest = &s[19..];
        let mut micros = 0i64;
        if let Some(frac) = rest.strip_prefix('.') {
            let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(bad());
            }
            let mut value = 0i64;
            for (i, c) in frac[..digits].bytes().enumerate().take(6) {
                value += (c - b'0') as i64 * 10i64.pow(5 - i as u32);
            }
            micros = value;
            rest = &frac[digits..];
        }
        let offset_secs = match rest {
            "" | "Z" | "z" => 0,
            _ if (rest.starts_with('+') || rest.starts_with('-')) && rest.len() == 6 && &rest[3..4] == ":" => {
                let sign = if rest.starts_with('-') { -1 } else { 1 };
                let oh: i64 = rest[1..3].parse().map_err(|_| bad())?;
                let om: i64 = rest[4..6].parse().map_err(|_| bad())?;
                sign * (oh * 3600 + om * 60)
            }
            _ => return Err(bad()),
        };
        let secs = days * 86_400 + hh * 3600 + mi * 60 + ss - offset_secs;
        Ok(Timestamp(secs * 1_000_000 + micros))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Timestamp, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Text(String),
            Secs(f64),
        }
        match Repr::deserialize(deserializer)? {
            Repr::Text(text) => Timestamp::parse_rfc3339(&text).map_err(serde::de::Error::custom),
            Repr::Secs(secs) if secs.is_finite() => Ok(Timestamp::from_secs_f64(secs)),
            Repr::Secs(secs) => Err(serde::de::Error::custom(format!("{secs} is not a valid timestamp"))),
        }
    }
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Timestamp {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::DateTime)))
            .description(Some("RFC 3339 time in UTC; on input, seconds since the epoch are accepted too"))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Timestamp {}

// Howard Hinnant's algorithms (public domain), proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses() {
        let ts = Timestamp::parse_rfc3339("2024-11-05T11:10:06Z").unwrap();
        assert_eq!(ts.0, 1_730_805_006_000_000);
        assert_eq!(ts.to_rfc3339(), "2024-11-05T11:10:06Z");
        let frac = Timestamp(1_730_805_006_123_456);
        assert_eq!(frac.to_rfc3339(), "2024-11-05T11:10:06.123456Z");
        assert_eq!(Timestamp::parse_rfc3339(&frac.to_rfc3339()).unwrap(), frac);
        assert_eq!(Timestamp::parse_rfc3339("2024-11-05T20:10:06+09:00").unwrap(), Timestamp::parse_rfc3339("2024-11-05T11:10:06Z").unwrap());
        assert_eq!(Timestamp::parse_rfc3339("1970-01-01").unwrap(), Timestamp(0));
        assert_eq!(Timestamp(-1).to_rfc3339(), "1969-12-31T23:59:59.999999Z");
        for bad in ["", "2024", "2024-13-01", "2024-11-05T25:00:00Z", "yesterday", "2024-11-05T11:10:06+9"] {
            assert!(Timestamp::parse_rfc3339(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn round_trips_many_days() {
        for days in (-719_000..2_900_000).step_by(997) {
            let ts = Timestamp(days * 86_400_000_000 + 12_345_678);
            assert_eq!(Timestamp::parse_rfc3339(&ts.to_rfc3339()).unwrap(), ts);
        }
    }
}
