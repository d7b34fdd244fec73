//! The fake upstream's data: clients, sources, ISO weeks, and the rows every
//! source serves for a (client, source, week).
//!
//! Everything here is a pure function of its arguments. Rows come from a
//! ChaCha RNG seeded with the SHA-256 of a string such as
//! `c07/meta/2026-W49`, never from the server's seed or fault profile, so
//! two servers (and two runs) see the same rows for the same week. The only
//! per-request variation is the row order of GA4 and Search Console, which
//! is a permutation seeded by the bearer token.

use std::fmt;

use jiff::civil::{Date, ISOWeekDate, Weekday};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Rows per page, for every source.
pub const PAGE_SIZE: u32 = 10;
/// The fewest rows a (client, source, week) has.
pub const MIN_ROWS: usize = 25;
/// The most rows a (client, source, week) has.
pub const MAX_ROWS: usize = 45;
/// The most clients `--clients` accepts (`c01`…`c999`).
pub const MAX_CLIENTS: u32 = 999;

/// One of the six APIs the pipeline pulls from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    Meta,
    Linkedin,
    Ga4,
    SearchConsole,
    Mailchimp,
    Warehouse,
}

impl Source {
    /// Every source, in the pipeline's order.
    pub const ALL: [Source; 6] =
        [Source::Meta, Source::Linkedin, Source::Ga4, Source::SearchConsole, Source::Mailchimp, Source::Warehouse];

    /// The name the token endpoint and the request log use.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Meta => "meta",
            Source::Linkedin => "linkedin",
            Source::Ga4 => "ga4",
            Source::SearchConsole => "search-console",
            Source::Mailchimp => "mailchimp",
            Source::Warehouse => "warehouse",
        }
    }

    /// The source named `name`, if any.
    pub fn parse(name: &str) -> Option<Source> {
        Source::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Whether the source returns its rows in a per-token order.
    pub fn shuffled(self) -> bool {
        matches!(self, Source::Ga4 | Source::SearchConsole)
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An ISO week, written `YYYY-Www` (`2026-W49`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Week {
    year: i16,
    week: i8,
}

impl Week {
    /// Parses exactly `YYYY-Www`, a week that exists in that ISO year.
    pub fn parse(text: &str) -> Option<Week> {
        let b = text.as_bytes();
        if b.len() != 8 || b[4] != b'-' || b[5] != b'W' {
            return None;
        }
        let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
        if !digits(&b[..4]) || !digits(&b[6..]) {
            return None;
        }
        let year: i16 = text[..4].parse().ok()?;
        let week: i8 = text[6..].parse().ok()?;
        // Both ends must exist: the Monday and the Sunday of the week.
        ISOWeekDate::new(year, week, Weekday::Monday).ok()?;
        ISOWeekDate::new(year, week, Weekday::Sunday).ok()?;
        Some(Week { year, week })
    }

    /// The seven dates of the week, Monday first.
    pub fn days(self) -> [Date; 7] {
        const DAYS: [Weekday; 7] = [
            Weekday::Monday,
            Weekday::Tuesday,
            Weekday::Wednesday,
            Weekday::Thursday,
            Weekday::Friday,
            Weekday::Saturday,
            Weekday::Sunday,
        ];
        // `parse` checked that Monday and Sunday exist, so every day does.
        DAYS.map(|day| ISOWeekDate::new(self.year, self.week, day).map(|d| d.date()).unwrap_or_default())
    }

    /// The week's Monday.
    pub fn monday(self) -> Date {
        self.days()[0]
    }

    /// `2026W49`, for identifiers.
    fn compact(self) -> String {
        format!("{:04}W{:02}", self.year, self.week)
    }
}

impl fmt::Display for Week {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-W{:02}", self.year, self.week)
    }
}

/// Finds the first `YYYY-Www` inside `text` (an email subject, a filename).
pub fn find_week(text: &str) -> Option<Week> {
    (0..text.len().saturating_sub(7)).filter(|&i| text.is_char_boundary(i)).find_map(|i| {
        let end = i + 8;
        text.get(i..end).and_then(Week::parse)
    })
}

const ADJECTIVES: [&str; 20] = [
    "Aurora", "Birch", "Cobalt", "Dune", "Ember", "Fjord", "Granite", "Harbor", "Indigo", "Juniper", "Kestrel",
    "Linden", "Meadow", "Nimbus", "Orchard", "Pebble", "Quarry", "Rowan", "Saffron", "Tidal",
];

const TRADES: [&str; 20] = [
    "Bakery",
    "Bikes",
    "Books",
    "Brewing",
    "Carpentry",
    "Coffee",
    "Dental",
    "Florist",
    "Fitness",
    "Gallery",
    "Garage",
    "Bistro",
    "Interiors",
    "Law",
    "Optics",
    "Pottery",
    "Print",
    "Studio",
    "Tailors",
    "Yoga",
];

/// The id of client number `n`: `c01`, …, `c60`, `c100`.
pub fn client_id(n: u32) -> String {
    format!("c{n:02}")
}

/// The address reports for client `n` go to: `reports+c07@example.test`.
pub fn client_email(n: u32) -> String {
    format!("reports+{}@example.test", client_id(n))
}

/// The name of client `n` (from 1): an adjective and a trade, e.g.
/// "Aurora Bakery". The first 400 are all different; later ones repeat
/// with a number after them ("Aurora Bakery 2").
pub fn client_name(n: u32) -> String {
    let (adjective, trade) = name_parts(n);
    let round = n.saturating_sub(1) / 400;
    if round == 0 { format!("{adjective} {trade}") } else { format!("{adjective} {trade} {}", round + 1) }
}

fn name_parts(n: u32) -> (&'static str, &'static str) {
    let i = (n.saturating_sub(1) % 400) as usize;
    let (q, r) = (i / ADJECTIVES.len(), i % ADJECTIVES.len());
    // Walks the trades with a step coprime to their count, so the 400
    // (adjective, trade) pairs are all used once.
    (ADJECTIVES[r], TRADES[(7 * r + q) % TRADES.len()])
}

/// Client number `n` of `id` (`c07` → 7) when it is one of `clients`;
/// only the canonical spelling counts (`c7` and `c007` do not).
pub fn parse_client(id: &str, clients: u32) -> Option<u32> {
    let n: u32 = id.strip_prefix('c')?.parse().ok()?;
    (n >= 1 && n <= clients && client_id(n) == id).then_some(n)
}

/// The SHA-256 of `text`.
pub fn sha256(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

/// A uniform number in [0, 1) from the hash of `text`.
pub fn unit(text: &str) -> f64 {
    (u64_of(text) >> 11) as f64 / (1u64 << 53) as f64
}

/// A number from the hash of `text`.
pub fn u64_of(text: &str) -> u64 {
    let d = sha256(text);
    u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

/// An RNG seeded with the SHA-256 of `text`.
fn rng_for(text: &str) -> ChaCha8Rng {
    ChaCha8Rng::from_seed(sha256(text))
}

const AD_CAMPAIGNS: [&str; 12] = [
    "Brand Awareness",
    "Spring Sale",
    "Retargeting",
    "Lookalike Audiences",
    "Local Reach",
    "New Arrivals",
    "Holiday Promo",
    "Lead Generation",
    "Video Views",
    "Website Traffic",
    "Loyalty Offer",
    "Weekend Deals",
];

const PAGES: [&str; 12] = [
    "/",
    "/pricing",
    "/about",
    "/contact",
    "/services",
    "/blog",
    "/shop",
    "/faq",
    "/book",
    "/reviews",
    "/team",
    "/blog/behind-the-scenes",
];

const QUERIES: [&str; 12] = [
    "{name}",
    "{name} reviews",
    "{name} opening hours",
    "{trade} near me",
    "best {trade}",
    "{trade} prices",
    "{trade} amsterdam",
    "cheap {trade}",
    "{trade} open sunday",
    "{name} contact",
    "local {trade}",
    "{trade} gift card",
];

const NEWSLETTERS: [&str; 12] = [
    "Weekly Newsletter",
    "Product Update",
    "Flash Sale",
    "Customer Survey",
    "Event Invitation",
    "Win-back",
    "Welcome Series",
    "Monthly Digest",
    "Tips & Tricks",
    "Seasonal Offer",
    "Loyalty Rewards",
    "New in Store",
];

/// The keys of a client's source that stay the same from week to week
/// (campaigns, pages, queries), and the client's size.
struct Profile {
    keys: Vec<(String, String)>,
    scale: f64,
}

fn profile(client: u32, source: Source) -> Profile {
    let mut rng = rng_for(&format!("{}/{}", client_id(client), source));
    let scale = rng.random_range(0.6..2.5);
    fn pick(rng: &mut ChaCha8Rng, pool: &[&'static str]) -> Vec<&'static str> {
        let mut pool = pool.to_vec();
        pool.shuffle(rng);
        pool.truncate(8);
        pool
    }
    let keys: Vec<(String, String)> = match source {
        Source::Meta => pick(&mut rng, &AD_CAMPAIGNS)
            .into_iter()
            .map(|c| (format!("2385{:011}", rng.random_range(0..100_000_000_000u64)), c.to_owned()))
            .collect(),
        Source::Linkedin => pick(&mut rng, &AD_CAMPAIGNS)
            .into_iter()
            .map(|c| (format!("5{:08}", rng.random_range(0..100_000_000u64)), c.to_owned()))
            .collect(),
        Source::Ga4 => pick(&mut rng, &PAGES).into_iter().map(|p| (p.to_owned(), String::new())).collect(),
        Source::SearchConsole => {
            let (adjective, trade) = name_parts(client);
            let name = format!("{adjective} {trade}").to_lowercase();
            let trade = trade.to_lowercase();
            pick(&mut rng, &QUERIES)
                .into_iter()
                .map(|q| (q.replace("{name}", &name).replace("{trade}", &trade), String::new()))
                .collect()
        }
        Source::Mailchimp => pick(&mut rng, &NEWSLETTERS).into_iter().map(|c| (c.to_owned(), String::new())).collect(),
        Source::Warehouse => Vec::new(),
    };
    Profile { keys, scale }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Every row of (client, source, week), in the source's natural order
/// (by date, then key). 25–45 rows, spread over the week's seven days,
/// with at most one row per (date, key).
pub fn rows(client: u32, source: Source, week: Week) -> Vec<Value> {
    let Profile { mut keys, scale } = profile(client, source);
    let mut rng = rng_for(&format!("{}/{}/{}", client_id(client), source, week));
    let n = rng.random_range(MIN_ROWS..=MAX_ROWS);
    // Rows per day: n / 7 each (3–6), the remainder on random days.
    let mut per_day = [n / 7; 7];
    let mut days: Vec<usize> = (0..7).collect();
    days.shuffle(&mut rng);
    for &d in days.iter().take(n % 7) {
        per_day[d] += 1;
    }
    let mut out = Vec::with_capacity(n);
    for (day, date) in week.days().into_iter().enumerate() {
        let date = date.to_string();
        keys.shuffle(&mut rng);
        let mut today: Vec<(String, String)> = keys.iter().take(per_day[day]).cloned().collect();
        today.sort();
        for i in 0..per_day[day] {
            let key = today.get(i).cloned().unwrap_or_default();
            out.push(row(&mut rng, client, source, week, &date, key, scale, out.len()));
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn row(
    rng: &mut ChaCha8Rng,
    client: u32,
    source: Source,
    week: Week,
    date: &str,
    (key, name): (String, String),
    scale: f64,
    index: usize,
) -> Value {
    match source {
        Source::Meta => {
            let impressions = (scale * rng.random_range(1_500.0..12_000.0)).round() as u64;
            let clicks = (impressions as f64 * rng.random_range(0.005..0.035)).round() as u64;
            let spend = round2(clicks as f64 * rng.random_range(0.25..1.80));
            json!({"campaign_id": key, "campaign": name, "date": date,
                   "impressions": impressions, "clicks": clicks, "spend": spend})
        }
        Source::Linkedin => {
            let impressions = (scale * rng.random_range(800.0..6_000.0)).round() as u64;
            let clicks = (impressions as f64 * rng.random_range(0.004..0.02)).round() as u64;
            let cost = round2(clicks as f64 * rng.random_range(2.0..7.5));
            json!({"campaign_id": key, "campaign": name, "date": date,
                   "impressions": impressions, "clicks": clicks, "cost": cost})
        }
        Source::Ga4 => {
            let sessions = (scale * rng.random_range(40.0..900.0)).round() as u64;
            let conversions = (sessions as f64 * rng.random_range(0.0..0.06)).round() as u64;
            json!({"page": key, "date": date, "sessions": sessions, "conversions": conversions})
        }
        Source::SearchConsole => {
            let impressions = (scale * rng.random_range(50.0..3_000.0)).round() as u64;
            let clicks = (impressions as f64 * rng.random_range(0.01..0.12)).round() as u64;
            let position = (rng.random_range(1.0..30.0f64) * 10.0).round() / 10.0;
            json!({"query": key, "date": date, "clicks": clicks, "impressions": impressions, "position": position})
        }
        Source::Mailchimp => {
            let sent = (scale * rng.random_range(400.0..6_000.0)).round() as u64;
            let opens = (sent as f64 * rng.random_range(0.15..0.45)).round() as u64;
            let clicks = (opens as f64 * rng.random_range(0.05..0.25)).round() as u64;
            json!({"campaign": key, "date": date, "sent": sent, "opens": opens, "clicks": clicks})
        }
        Source::Warehouse => {
            let order_id = format!("ord-{}-{}-{:03}", client_id(client), week.compact(), index + 1);
            let revenue = round2(rng.random_range(15.0..320.0) * scale.sqrt());
            let items = rng.random_range(1..=6u32);
            json!({"order_id": order_id, "date": date, "revenue": revenue, "items": items})
        }
    }
}

/// Puts `rows` in the order a token sees them: a permutation seeded by the
/// token, the client, the source and the week (so every page fetched with
/// one token agrees, and another token sees another order).
pub fn shuffle_for_token(rows: &mut [Value], token: &str, client: u32, source: Source, week: Week) {
    let mut rng = rng_for(&format!("order/{token}/{}/{source}/{week}", client_id(client)));
    rows.shuffle(&mut rng);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weeks_parse_strictly_and_start_on_monday() {
        let w = Week::parse("2026-W49").unwrap();
        assert_eq!(w.to_string(), "2026-W49");
        assert_eq!(w.monday().to_string(), "2026-11-30");
        assert_eq!(w.days()[6].to_string(), "2026-12-06");
        assert_eq!(Week::parse("2026-W01").unwrap().monday().to_string(), "2025-12-29");
        assert!(Week::parse("2026-W53").is_some(), "2026 has 53 ISO weeks");
        for bad in ["2025-W53", "2026-W00", "2026-W54", "2026-49", "2026-w49", "26-W49", "2026-W4", "+026-W49", ""] {
            assert!(Week::parse(bad).is_none(), "{bad}");
        }
        assert_eq!(find_week("Weekly report 2026-W49 for Aurora Bakery"), Some(w));
        assert_eq!(find_week("c07-2026-W49.pdf"), Some(w));
        assert_eq!(find_week("no week here, ünïcödé"), None);
    }

    #[test]
    fn clients_have_stable_distinct_names() {
        assert_eq!(client_name(1), "Aurora Bakery");
        assert_eq!(client_id(7), "c07");
        assert_eq!(client_email(7), "reports+c07@example.test");
        let names: std::collections::HashSet<String> = (1..=400).map(client_name).collect();
        assert_eq!(names.len(), 400);
        assert_eq!(client_name(401), "Aurora Bakery 2");
        assert_eq!(parse_client("c07", 60), Some(7));
        assert_eq!(parse_client("c60", 60), Some(60));
        for bad in ["c61", "c00", "c7", "c007", "07", "c-1", "c", "C07"] {
            assert_eq!(parse_client(bad, 60), None, "{bad}");
        }
    }

    #[test]
    fn rows_are_deterministic_and_plausible() {
        let week = Week::parse("2026-W49").unwrap();
        let dates: Vec<String> = week.days().iter().map(|d| d.to_string()).collect();
        for source in Source::ALL {
            for client in [1, 2, 60] {
                let a = rows(client, source, week);
                assert_eq!(a, rows(client, source, week));
                assert!((MIN_ROWS..=MAX_ROWS).contains(&a.len()), "{source}: {} rows", a.len());
                let mut seen = std::collections::HashSet::new();
                for r in &a {
                    let date = r["date"].as_str().unwrap();
                    assert!(dates.iter().any(|d| d == date));
                    let key = ["campaign_id", "page", "query", "campaign", "order_id"]
                        .iter()
                        .find_map(|k| r.get(*k))
                        .unwrap()
                        .to_string();
                    assert!(seen.insert((date.to_owned(), key)), "one row per (date, key)");
                }
            }
        }
        let meta = rows(1, Source::Meta, week);
        assert!(meta.iter().all(|r| r["impressions"].as_u64().unwrap() >= 900 && r["spend"].is_f64()));
        assert_ne!(rows(1, Source::Meta, week), rows(2, Source::Meta, week));
        assert_ne!(rows(1, Source::Meta, week), rows(1, Source::Meta, Week::parse("2026-W50").unwrap()));
    }

    #[test]
    fn token_order_is_a_permutation() {
        let week = Week::parse("2026-W49").unwrap();
        let base = rows(3, Source::Ga4, week);
        let (mut a, mut b) = (base.clone(), base.clone());
        shuffle_for_token(&mut a, "tok_1_x", 3, Source::Ga4, week);
        shuffle_for_token(&mut b, "tok_2_y", 3, Source::Ga4, week);
        assert_ne!(a, b);
        let sorted = |mut v: Vec<Value>| {
            v.sort_by_key(|r| r.to_string());
            v
        };
        assert_eq!(sorted(a), sorted(base.clone()));
        assert_eq!(sorted(b), sorted(base));
    }
}
