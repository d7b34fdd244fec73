//! ISO 8601 weeks (`2026-W49`, Monday to Sunday) and civil dates, computed
//! by hand: days since the Unix epoch, Howard Hinnant's civil-date
//! algorithms, and the ISO rule that a week belongs to the year of its
//! Thursday.

use std::fmt;

use ferry_sdk::{Error, Result};

/// A civil (proleptic Gregorian) date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    pub year: i32,
    pub month: u32,
    pub day: u32,
}

impl Date {
    /// The date `days` days after 1970-01-01 (before it when negative).
    pub fn from_days(days: i64) -> Date {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        Date { year: year as i32, month: month as u32, day: day as u32 }
    }

    /// Days from 1970-01-01 to this date.
    pub fn days(self) -> i64 {
        let (m, d) = (i64::from(self.month), i64::from(self.day));
        let y = i64::from(self.year) - i64::from(self.month <= 2);
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (m + 9) % 12;
        let doy = (153 * mp + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// 0 for Monday … 6 for Sunday.
    pub fn weekday(self) -> u32 {
        weekday_of(self.days())
    }

    /// `Mon` … `Sun`.
    pub fn weekday_short(self) -> &'static str {
        ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"][self.weekday() as usize]
    }

    /// `Jan` … `Dec`.
    pub fn month_short(self) -> &'static str {
        const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
        MONTHS[(self.month.clamp(1, 12) - 1) as usize]
    }

    /// The ISO week this date is in.
    pub fn iso_week(self) -> Week {
        Week::of_days(self.days())
    }
}

impl fmt::Display for Date {
    /// `YYYY-MM-DD`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// 0 for Monday … 6 for Sunday, of the day `days` after 1970-01-01 (a
/// Thursday).
fn weekday_of(days: i64) -> u32 {
    (days + 3).rem_euclid(7) as u32
}

/// An ISO week: `year` is the ISO week-numbering year (that of the week's
/// Thursday), `week` 1 to 52 or 53.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Week {
    pub year: i32,
    pub week: u32,
}

impl Week {
    /// The week of the day `days` after 1970-01-01.
    pub fn of_days(days: i64) -> Week {
        let thursday = days - i64::from(weekday_of(days)) + 3;
        let year = Date::from_days(thursday).year;
        let jan1 = Date { year, month: 1, day: 1 }.days();
        Week { year, week: ((thursday - jan1) / 7 + 1) as u32 }
    }

    /// The week of an instant, in milliseconds since the Unix epoch (UTC).
    pub fn of_unix_millis(ms: u64) -> Week {
        Week::of_days((ms / 86_400_000) as i64)
    }

    /// How many ISO weeks `year` has (52 or 53).
    pub fn weeks_in_year(year: i32) -> u32 {
        // December 28 is always in the year's last week.
        Date { year, month: 12, day: 28 }.iso_week().week
    }

    /// Parses exactly `YYYY-Www`, a week that exists in that ISO year.
    pub fn parse(text: &str) -> Option<Week> {
        let b = text.as_bytes();
        if b.len() != 8 || b[4] != b'-' || b[5] != b'W' {
            return None;
        }
        if !b[..4].iter().chain(&b[6..]).all(u8::is_ascii_digit) {
            return None;
        }
        let year: i32 = text[..4].parse().ok()?;
        let week: u32 = text[6..].parse().ok()?;
        (year >= 1 && week >= 1 && week <= Week::weeks_in_year(year)).then_some(Week { year, week })
    }

    /// [`Week::parse`] for a step's input: a fatal error when `text` is not
    /// a week.
    pub fn parse_input(text: &str) -> Result<Week> {
        Week::parse(text)
            .ok_or_else(|| Error::fatal(format!("`week` must be an ISO week like \"2026-W49\", not {text:?}")))
    }

    /// The week's Monday.
    pub fn monday(self) -> Date {
        let jan4 = Date { year: self.year, month: 1, day: 4 }.days();
        let first_monday = jan4 - i64::from(weekday_of(jan4));
        Date::from_days(first_monday + 7 * (i64::from(self.week) - 1))
    }

    /// The seven dates of the week, Monday first.
    pub fn days(self) -> [Date; 7] {
        let monday = self.monday().days();
        std::array::from_fn(|i| Date::from_days(monday + i as i64))
    }

    /// The seven dates as `YYYY-MM-DD`, Monday first.
    pub fn day_strings(self) -> [String; 7] {
        self.days().map(|d| d.to_string())
    }
}

impl fmt::Display for Week {
    /// `YYYY-Www`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-W{:02}", self.year, self.week)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(year: i32, month: u32, day: u32) -> Date {
        Date { year, month, day }
    }

    #[test]
    fn civil_dates_round_trip() {
        assert_eq!(date(1970, 1, 1).days(), 0);
        assert_eq!(Date::from_days(0), date(1970, 1, 1));
        assert_eq!(date(2000, 3, 1).days(), 11_017);
        assert_eq!(Date::from_days(-1), date(1969, 12, 31));
        assert_eq!(date(2028, 2, 29).to_string(), "2028-02-29");
        for days in -800_000..800_000 {
            let d = Date::from_days(days);
            assert_eq!(d.days(), days, "{d}");
        }
        assert_eq!(date(1970, 1, 1).weekday_short(), "Thu");
        assert_eq!(date(2026, 11, 30).weekday_short(), "Mon");
        assert_eq!(date(2026, 12, 6).weekday_short(), "Sun");
    }

    #[test]
    fn iso_weeks_of_known_dates() {
        let cases = [
            (date(1970, 1, 1), "1970-W01"),
            (date(2020, 12, 31), "2020-W53"),
            (date(2021, 1, 3), "2020-W53"),
            (date(2021, 1, 4), "2021-W01"),
            (date(2024, 12, 30), "2025-W01"),
            (date(2025, 12, 28), "2025-W52"),
            (date(2025, 12, 29), "2026-W01"),
            (date(2026, 12, 4), "2026-W49"),
            (date(2026, 12, 31), "2026-W53"),
            (date(2027, 1, 3), "2026-W53"),
            (date(2027, 1, 4), "2027-W01"),
        ];
        for (d, week) in cases {
            assert_eq!(d.iso_week().to_string(), week, "{d}");
        }
        // Friday 2026-12-04 20:00 UTC (21:00 in Amsterdam).
        assert_eq!(Week::of_unix_millis(1_796_414_400_000).to_string(), "2026-W49");
        assert_eq!(Week::of_unix_millis(0).to_string(), "1970-W01");
    }

    #[test]
    fn weeks_parse_strictly() {
        let w = Week::parse("2026-W49").unwrap();
        assert_eq!(w, Week { year: 2026, week: 49 });
        assert_eq!(w.monday(), date(2026, 11, 30));
        assert_eq!(w.days()[6], date(2026, 12, 6));
        assert_eq!(w.day_strings()[0], "2026-11-30");
        assert_eq!(Week::parse("2026-W01").unwrap().monday(), date(2025, 12, 29));
        assert!(Week::parse("2026-W53").is_some(), "2026 has 53 ISO weeks");
        assert_eq!(Week::weeks_in_year(2026), 53);
        assert_eq!(Week::weeks_in_year(2025), 52);
        for bad in
            ["2025-W53", "2026-W00", "2026-W54", "2026-49", "2026-w49", "26-W49", "2026-W4", "+026-W49", "", "0000-W01"]
        {
            assert!(Week::parse(bad).is_none(), "{bad}");
        }
        assert!(Week::parse_input("soon").unwrap_err().is_fatal());
    }

    #[test]
    fn every_day_lies_in_its_week() {
        // 1990-01-01 to 2040-12-31: the week's Monday is at most six days
        // before, the text form parses back, and weeks are consecutive.
        let (from, to) = (date(1990, 1, 1).days(), date(2040, 12, 31).days());
        let mut previous: Option<Week> = None;
        for days in from..=to {
            let week = Week::of_days(days);
            let monday = week.monday().days();
            assert!(monday <= days && days < monday + 7, "{}", Date::from_days(days));
            assert_eq!(Week::parse(&week.to_string()), Some(week));
            if let Some(p) = previous
                && p != week
            {
                let next = if p.week == Week::weeks_in_year(p.year) {
                    Week { year: p.year + 1, week: 1 }
                } else {
                    Week { year: p.year, week: p.week + 1 }
                };
                assert_eq!(week, next);
                assert_eq!(Date::from_days(days).weekday(), 0);
            }
            previous = Some(week);
        }
    }
}
