//! Cron ticks in a time zone.

use croner::parser::{CronParser, Seconds};

use crate::domain::Micros;

/// The first tick of `cron` (five fields, or six with seconds first) in
/// time zone `timezone` strictly after `after`.
pub fn next_tick(cron: &str, timezone: &str, after: Micros) -> Result<Micros, String> {
    let parsed = CronParser::builder()
        .seconds(Seconds::Optional)
        .build()
        .parse(cron)
        .map_err(|e| format!("`{cron}` is not a cron expression: {e}"))?;
    let tz = jiff::tz::TimeZone::get(timezone)
        .map_err(|_| format!("`{timezone}` is not a known time zone (use an IANA name such as Europe/Amsterdam)"))?;
    let start = jiff::Timestamp::from_microsecond(after.0).map_err(|e| e.to_string())?.to_zoned(tz);
    let next = parsed.find_next_occurrence(&start, false).map_err(|e| format!("`{cron}` never fires: {e}"))?;
    Ok(Micros(next.timestamp().as_microsecond()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Micros {
        Micros(s.parse::<jiff::Timestamp>().map(|t| t.as_microsecond()).unwrap_or_default())
    }

    #[test]
    fn friday_nine_pm_in_amsterdam_follows_daylight_saving() {
        // Winter: CET (UTC+1) → 20:00 UTC.
        let next = next_tick("0 21 * * FRI", "Europe/Amsterdam", at("2026-12-02T12:00:00Z"));
        assert_eq!(next, Ok(at("2026-12-04T20:00:00Z")));
        // Summer: CEST (UTC+2) → 19:00 UTC.
        let next = next_tick("0 21 * * FRI", "Europe/Amsterdam", at("2026-07-01T12:00:00Z"));
        assert_eq!(next, Ok(at("2026-07-03T19:00:00Z")));
        // Strictly after: a tick exactly at `after` is not returned again.
        let next = next_tick("0 21 * * FRI", "Europe/Amsterdam", at("2026-12-04T20:00:00Z"));
        assert_eq!(next, Ok(at("2026-12-11T20:00:00Z")));
    }

    #[test]
    fn seconds_are_optional_and_bad_input_is_explained() {
        assert_eq!(next_tick("* * * * * *", "UTC", at("2026-01-01T00:00:00Z")), Ok(at("2026-01-01T00:00:01Z")));
        assert!(next_tick("every friday", "UTC", Micros(0)).unwrap_err().contains("not a cron expression"));
        assert!(next_tick("0 21 * * FRI", "Mars/Olympus", Micros(0)).unwrap_err().contains("time zone"));
    }
}
