//! The three tables the transforms store: `ads` (Meta + LinkedIn), `web`
//! (GA4 + Search Console) and `crm` (Mailchimp + warehouse orders).
//!
//! Each is built the same way, and is a pure function of the *set* of rows
//! it gets (never of their order):
//!
//! 1. every raw row is read into the table's fixed fields (money in cents,
//!    dates checked against the week);
//! 2. the rows are sorted by a total order: (date, source, key), then the
//!    row's canonical JSON, so even two rows equal in those fields have one
//!    order;
//! 3. `row_hashes` are the rows' [`hash::row_hash`] in that order, `digest`
//!    their [`hash::digest`];
//! 4. totals and the per-day series (all seven days of the week, zeros
//!    included) are integer sums, turned into two-decimal figures at the end.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use ferry_sdk::{Error, Result};

use crate::hash;
use crate::money::{from_cents, ratio, to_cents, to_hundredths};
use crate::types::Source;
use crate::week::Week;

/// A table's name in the warehouse: `ads`, `web` or `crm`.
pub const ADS: &str = "ads";
/// See [`ADS`].
pub const WEB: &str = "web";
/// See [`ADS`].
pub const CRM: &str = "crm";

/// A row of one of the tables.
pub trait TableRow: Serialize {
    /// (date, source, key): the first part of the table's sort order.
    fn sort_key(&self) -> (&str, &str, &str);
}

/// A built table, before it is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Table<R, T, D> {
    /// Sorted.
    pub rows: Vec<R>,
    /// One per row, in the same order.
    pub row_hashes: Vec<String>,
    pub digest: String,
    pub totals: T,
    /// The week's seven days, Monday first.
    pub daily: Vec<D>,
}

/// What the warehouse answered to the table's snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotAnswer {
    #[serde(default)]
    pub stored: bool,
    pub changed: bool,
    pub previous_digest: Option<String>,
}

/// A transform step's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableOutput<R, T, D> {
    pub table: String,
    pub client: String,
    pub week: String,
    pub rows: Vec<R>,
    pub row_hashes: Vec<String>,
    pub digest: String,
    /// Whether `digest` differs from the latest snapshot of an earlier week
    /// (true for the first one).
    pub changed: bool,
    pub previous_digest: Option<String>,
    pub totals: T,
    pub daily: Vec<D>,
}

/// A transform's output without `rows` and `row_hashes`: what `render-pdf`
/// gets. Deserializing a whole [`TableOutput`] into it works too (the extra
/// fields are ignored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary<T, D> {
    pub table: String,
    pub client: String,
    pub week: String,
    pub digest: String,
    pub changed: bool,
    pub previous_digest: Option<String>,
    pub totals: T,
    pub daily: Vec<D>,
}

impl<R, T, D> Table<R, T, D> {
    /// The step output for this table once stored.
    pub fn into_output(self, table: &str, client: &str, week: Week, answer: SnapshotAnswer) -> TableOutput<R, T, D> {
        TableOutput {
            table: table.to_owned(),
            client: client.to_owned(),
            week: week.to_string(),
            rows: self.rows,
            row_hashes: self.row_hashes,
            digest: self.digest,
            changed: answer.changed,
            previous_digest: answer.previous_digest,
            totals: self.totals,
            daily: self.daily,
        }
    }
}

/// Sorts `rows` by the table order and hashes them: (rows, row hashes,
/// digest).
pub fn seal<R: TableRow>(rows: Vec<R>) -> Result<(Vec<R>, Vec<String>, String)> {
    let mut keyed = rows
        .into_iter()
        .map(|row| {
            let json =
                hash::canonical_json_of(&row).map_err(|e| Error::fatal(format!("a row does not serialize: {e}")))?;
            Ok((json, row))
        })
        .collect::<Result<Vec<(String, R)>>>()?;
    keyed.sort_by(|(ja, a), (jb, b)| a.sort_key().cmp(&b.sort_key()).then_with(|| ja.cmp(jb)));
    let row_hashes: Vec<String> = keyed.iter().map(|(json, _)| hash::sha256_hex(json.as_bytes())).collect();
    let digest = hash::digest(&row_hashes);
    Ok((keyed.into_iter().map(|(_, row)| row).collect(), row_hashes, digest))
}

/// Reads every raw row of `source` into `T`; fatal on the first that does
/// not fit, naming its position and the field.
fn read_rows<T: DeserializeOwned>(source: Source, rows: &[Value]) -> Result<Vec<T>> {
    rows.iter()
        .enumerate()
        .map(|(i, row)| {
            T::deserialize(row)
                .map_err(|e| Error::fatal(format!("row {} of {source} cannot be read: {e}: {row}", i + 1)))
        })
        .collect()
}

/// The index (0 = Monday) of `date` in the week, or a fatal error.
fn day_of(days: &[String; 7], week: Week, source: Source, i: usize, date: &str) -> Result<usize> {
    days.iter()
        .position(|d| d == date)
        .ok_or_else(|| Error::fatal(format!("row {} of {source} has date {date:?}, which is not in {week}", i + 1)))
}

/// The index of a date [`day_of`] has already accepted.
fn checked_day(days: &[String; 7], date: &str) -> usize {
    days.iter().position(|d| d == date).unwrap_or_default()
}

fn cents_of(source: Source, i: usize, field: &str, amount: f64) -> Result<i64> {
    to_cents(amount).ok_or_else(|| Error::fatal(format!("row {} of {source} has an invalid {field}: {amount}", i + 1)))
}

/// Accepts a string or an integer (an id some APIs send as a number).
fn id_string<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<String, D::Error> {
    match Value::deserialize(d)? {
        Value::String(s) => Ok(s),
        Value::Number(n) if n.is_u64() || n.is_i64() => Ok(n.to_string()),
        other => Err(serde::de::Error::custom(format!("expected a string id, got {other}"))),
    }
}

// ---------------------------------------------------------------- ads

/// A row of the `ads` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdsRow {
    pub date: String,
    /// `meta` or `linkedin`.
    pub channel: String,
    pub campaign_id: String,
    pub campaign: String,
    pub impressions: u64,
    pub clicks: u64,
    /// Two decimals (Meta's `spend`, LinkedIn's `cost`).
    pub cost: f64,
}

impl TableRow for AdsRow {
    fn sort_key(&self) -> (&str, &str, &str) {
        (&self.date, &self.channel, &self.campaign_id)
    }
}

/// One channel's share of the `ads` totals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelTotals {
    pub rows: u64,
    pub impressions: u64,
    pub clicks: u64,
    pub cost: f64,
}

/// The `ads` table's totals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdsTotals {
    pub rows: u64,
    pub impressions: u64,
    pub clicks: u64,
    pub cost: f64,
    /// Clicks per impression, in percent with two decimals.
    pub ctr_pct: f64,
    /// Cost per click.
    pub cpc: f64,
    pub meta: ChannelTotals,
    pub linkedin: ChannelTotals,
}

/// One day of the `ads` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdsDay {
    pub date: String,
    pub impressions: u64,
    pub clicks: u64,
    pub cost: f64,
}

#[derive(Deserialize)]
struct MetaRow {
    #[serde(deserialize_with = "id_string")]
    campaign_id: String,
    campaign: String,
    date: String,
    impressions: u64,
    clicks: u64,
    spend: f64,
}

#[derive(Deserialize)]
struct LinkedinRow {
    #[serde(deserialize_with = "id_string")]
    campaign_id: String,
    campaign: String,
    date: String,
    impressions: u64,
    clicks: u64,
    cost: f64,
}

#[derive(Default, Clone, Copy)]
struct AdsAcc {
    rows: u64,
    impressions: u64,
    clicks: u64,
    cents: i64,
}

impl AdsAcc {
    fn add(&mut self, impressions: u64, clicks: u64, cents: i64) {
        self.rows += 1;
        self.impressions += impressions;
        self.clicks += clicks;
        self.cents += cents;
    }

    fn channel(self) -> ChannelTotals {
        ChannelTotals {
            rows: self.rows,
            impressions: self.impressions,
            clicks: self.clicks,
            cost: from_cents(self.cents),
        }
    }
}

/// The `ads` table of a week from the raw rows of Meta and LinkedIn.
pub fn ads(week: Week, meta: &[Value], linkedin: &[Value]) -> Result<Table<AdsRow, AdsTotals, AdsDay>> {
    let days = week.day_strings();
    let mut rows = Vec::with_capacity(meta.len() + linkedin.len());
    for (i, r) in read_rows::<MetaRow>(Source::Meta, meta)?.into_iter().enumerate() {
        day_of(&days, week, Source::Meta, i, &r.date)?;
        let cents = cents_of(Source::Meta, i, "spend", r.spend)?;
        rows.push(AdsRow {
            date: r.date,
            channel: Source::Meta.to_string(),
            campaign_id: r.campaign_id,
            campaign: r.campaign,
            impressions: r.impressions,
            clicks: r.clicks,
            cost: from_cents(cents),
        });
    }
    for (i, r) in read_rows::<LinkedinRow>(Source::Linkedin, linkedin)?.into_iter().enumerate() {
        day_of(&days, week, Source::Linkedin, i, &r.date)?;
        let cents = cents_of(Source::Linkedin, i, "cost", r.cost)?;
        rows.push(AdsRow {
            date: r.date,
            channel: Source::Linkedin.to_string(),
            campaign_id: r.campaign_id,
            campaign: r.campaign,
            impressions: r.impressions,
            clicks: r.clicks,
            cost: from_cents(cents),
        });
    }
    let (rows, row_hashes, digest) = seal(rows)?;

    let (mut all, mut by_meta, mut by_linkedin) = (AdsAcc::default(), AdsAcc::default(), AdsAcc::default());
    let mut per_day = [AdsAcc::default(); 7];
    for r in &rows {
        // Exact: `cost` was made from cents above.
        let cents = to_cents(r.cost).unwrap_or_default();
        all.add(r.impressions, r.clicks, cents);
        let channel = if r.channel == Source::Meta.as_str() { &mut by_meta } else { &mut by_linkedin };
        channel.add(r.impressions, r.clicks, cents);
        per_day[checked_day(&days, &r.date)].add(r.impressions, r.clicks, cents);
    }
    let totals = AdsTotals {
        rows: all.rows,
        impressions: all.impressions,
        clicks: all.clicks,
        cost: from_cents(all.cents),
        ctr_pct: ratio(u128::from(all.clicks), u128::from(all.impressions), 10_000),
        cpc: ratio(all.cents.max(0) as u128, u128::from(all.clicks), 1),
        meta: by_meta.channel(),
        linkedin: by_linkedin.channel(),
    };
    let daily = days
        .iter()
        .zip(per_day)
        .map(|(date, d)| AdsDay {
            date: date.clone(),
            impressions: d.impressions,
            clicks: d.clicks,
            cost: from_cents(d.cents),
        })
        .collect();
    Ok(Table { rows, row_hashes, digest, totals, daily })
}

// ---------------------------------------------------------------- web

/// A row of the `web` table: a GA4 page-day (`sessions`, `conversions`)
/// or a Search Console query-day (`clicks`, `impressions`, `position`); the
/// other source's fields are 0 (and `position` null).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebRow {
    pub date: String,
    /// `ga4` or `search-console`.
    pub source: String,
    /// The page path (GA4) or the query (Search Console).
    pub key: String,
    pub sessions: u64,
    pub conversions: u64,
    pub clicks: u64,
    pub impressions: u64,
    /// Average search position, two decimals.
    pub position: Option<f64>,
}

impl TableRow for WebRow {
    fn sort_key(&self) -> (&str, &str, &str) {
        (&self.date, &self.source, &self.key)
    }
}

/// The `web` table's totals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebTotals {
    pub rows: u64,
    pub sessions: u64,
    pub conversions: u64,
    /// Conversions per session, percent.
    pub conversion_rate_pct: f64,
    pub search_clicks: u64,
    pub search_impressions: u64,
    /// Search clicks per impression, percent.
    pub search_ctr_pct: f64,
    /// Search position weighted by impressions; null without impressions.
    pub avg_position: Option<f64>,
}

/// One day of the `web` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebDay {
    pub date: String,
    pub sessions: u64,
    pub conversions: u64,
    pub search_clicks: u64,
    pub search_impressions: u64,
}

#[derive(Deserialize)]
struct Ga4Row {
    page: String,
    date: String,
    sessions: u64,
    conversions: u64,
}

#[derive(Deserialize)]
struct SearchRow {
    query: String,
    date: String,
    clicks: u64,
    impressions: u64,
    position: f64,
}

/// The `web` table of a week from the raw rows of GA4 and Search Console.
pub fn web(week: Week, ga4: &[Value], search_console: &[Value]) -> Result<Table<WebRow, WebTotals, WebDay>> {
    let days = week.day_strings();
    let mut rows = Vec::with_capacity(ga4.len() + search_console.len());
    for (i, r) in read_rows::<Ga4Row>(Source::Ga4, ga4)?.into_iter().enumerate() {
        day_of(&days, week, Source::Ga4, i, &r.date)?;
        rows.push(WebRow {
            date: r.date,
            source: Source::Ga4.to_string(),
            key: r.page,
            sessions: r.sessions,
            conversions: r.conversions,
            clicks: 0,
            impressions: 0,
            position: None,
        });
    }
    for (i, r) in read_rows::<SearchRow>(Source::SearchConsole, search_console)?.into_iter().enumerate() {
        day_of(&days, week, Source::SearchConsole, i, &r.date)?;
        let position = to_hundredths(r.position).filter(|p| *p >= 0).ok_or_else(|| {
            Error::fatal(format!("row {} of search-console has an invalid position: {}", i + 1, r.position))
        })?;
        rows.push(WebRow {
            date: r.date,
            source: Source::SearchConsole.to_string(),
            key: r.query,
            sessions: 0,
            conversions: 0,
            clicks: r.clicks,
            impressions: r.impressions,
            position: Some(from_cents(position)),
        });
    }
    let (rows, row_hashes, digest) = seal(rows)?;

    let mut totals = WebTotals {
        rows: rows.len() as u64,
        sessions: 0,
        conversions: 0,
        conversion_rate_pct: 0.0,
        search_clicks: 0,
        search_impressions: 0,
        search_ctr_pct: 0.0,
        avg_position: None,
    };
    let mut daily: Vec<WebDay> = days
        .iter()
        .map(|date| WebDay { date: date.clone(), sessions: 0, conversions: 0, search_clicks: 0, search_impressions: 0 })
        .collect();
    // Σ position (in hundredths) × impressions.
    let mut weighted_position: u128 = 0;
    for r in &rows {
        let day = &mut daily[checked_day(&days, &r.date)];
        totals.sessions += r.sessions;
        totals.conversions += r.conversions;
        totals.search_clicks += r.clicks;
        totals.search_impressions += r.impressions;
        day.sessions += r.sessions;
        day.conversions += r.conversions;
        day.search_clicks += r.clicks;
        day.search_impressions += r.impressions;
        if let Some(p) = r.position.and_then(to_hundredths) {
            weighted_position += p.max(0) as u128 * u128::from(r.impressions);
        }
    }
    totals.conversion_rate_pct = ratio(u128::from(totals.conversions), u128::from(totals.sessions), 10_000);
    totals.search_ctr_pct = ratio(u128::from(totals.search_clicks), u128::from(totals.search_impressions), 10_000);
    totals.avg_position =
        (totals.search_impressions > 0).then(|| ratio(weighted_position, u128::from(totals.search_impressions), 1));
    Ok(Table { rows, row_hashes, digest, totals, daily })
}

// ---------------------------------------------------------------- crm

/// A row of the `crm` table: a Mailchimp campaign-day (`sent`, `opens`,
/// `clicks`) or a warehouse order (`revenue`, `items`); the other source's
/// fields are 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrmRow {
    pub date: String,
    /// `mailchimp` or `warehouse`.
    pub source: String,
    /// The campaign (Mailchimp) or the order id (warehouse).
    pub key: String,
    pub sent: u64,
    pub opens: u64,
    pub clicks: u64,
    /// Two decimals.
    pub revenue: f64,
    pub items: u64,
}

impl TableRow for CrmRow {
    fn sort_key(&self) -> (&str, &str, &str) {
        (&self.date, &self.source, &self.key)
    }
}

/// The `crm` table's totals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrmTotals {
    pub rows: u64,
    pub emails_sent: u64,
    pub opens: u64,
    /// Opens per email sent, percent.
    pub open_rate_pct: f64,
    pub email_clicks: u64,
    /// Clicks per open, percent.
    pub click_rate_pct: f64,
    /// Warehouse orders (rows).
    pub orders: u64,
    pub revenue: f64,
    pub items: u64,
    /// Revenue per order.
    pub average_order_value: f64,
}

/// One day of the `crm` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrmDay {
    pub date: String,
    pub emails_sent: u64,
    pub opens: u64,
    pub email_clicks: u64,
    pub orders: u64,
    pub revenue: f64,
}

#[derive(Deserialize)]
struct MailchimpRow {
    campaign: String,
    date: String,
    sent: u64,
    opens: u64,
    clicks: u64,
}

#[derive(Deserialize)]
struct OrderRow {
    #[serde(deserialize_with = "id_string")]
    order_id: String,
    date: String,
    revenue: f64,
    items: u64,
}

/// The `crm` table of a week from the raw rows of Mailchimp and the
/// warehouse's orders.
pub fn crm(week: Week, mailchimp: &[Value], warehouse: &[Value]) -> Result<Table<CrmRow, CrmTotals, CrmDay>> {
    let days = week.day_strings();
    let mut rows = Vec::with_capacity(mailchimp.len() + warehouse.len());
    for (i, r) in read_rows::<MailchimpRow>(Source::Mailchimp, mailchimp)?.into_iter().enumerate() {
        day_of(&days, week, Source::Mailchimp, i, &r.date)?;
        rows.push(CrmRow {
            date: r.date,
            source: Source::Mailchimp.to_string(),
            key: r.campaign,
            sent: r.sent,
            opens: r.opens,
            clicks: r.clicks,
            revenue: 0.0,
            items: 0,
        });
    }
    for (i, r) in read_rows::<OrderRow>(Source::Warehouse, warehouse)?.into_iter().enumerate() {
        day_of(&days, week, Source::Warehouse, i, &r.date)?;
        let cents = cents_of(Source::Warehouse, i, "revenue", r.revenue)?;
        rows.push(CrmRow {
            date: r.date,
            source: Source::Warehouse.to_string(),
            key: r.order_id,
            sent: 0,
            opens: 0,
            clicks: 0,
            revenue: from_cents(cents),
            items: r.items,
        });
    }
    let (rows, row_hashes, digest) = seal(rows)?;

    let (mut sent, mut opens, mut clicks, mut orders, mut cents, mut items) = (0u64, 0u64, 0u64, 0u64, 0i64, 0u64);
    let mut per_day = [(0u64, 0u64, 0u64, 0u64, 0i64); 7];
    for r in &rows {
        let d = &mut per_day[checked_day(&days, &r.date)];
        let is_order = r.source == Source::Warehouse.as_str();
        let c = to_cents(r.revenue).unwrap_or_default();
        sent += r.sent;
        opens += r.opens;
        clicks += r.clicks;
        orders += u64::from(is_order);
        cents += c;
        items += r.items;
        d.0 += r.sent;
        d.1 += r.opens;
        d.2 += r.clicks;
        d.3 += u64::from(is_order);
        d.4 += c;
    }
    let totals = CrmTotals {
        rows: rows.len() as u64,
        emails_sent: sent,
        opens,
        open_rate_pct: ratio(u128::from(opens), u128::from(sent), 10_000),
        email_clicks: clicks,
        click_rate_pct: ratio(u128::from(clicks), u128::from(opens), 10_000),
        orders,
        revenue: from_cents(cents),
        items,
        average_order_value: ratio(cents.max(0) as u128, u128::from(orders), 1),
    };
    let daily = days
        .iter()
        .zip(per_day)
        .map(|(date, (sent, opens, clicks, orders, cents))| CrmDay {
            date: date.clone(),
            emails_sent: sent,
            opens,
            email_clicks: clicks,
            orders,
            revenue: from_cents(cents),
        })
        .collect();
    Ok(Table { rows, row_hashes, digest, totals, daily })
}

/// `ads` summary for `render-pdf`.
pub type AdsSummary = Summary<AdsTotals, AdsDay>;
/// `web` summary for `render-pdf`.
pub type WebSummary = Summary<WebTotals, WebDay>;
/// `crm` summary for `render-pdf`.
pub type CrmSummary = Summary<CrmTotals, CrmDay>;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A deterministic Fisher–Yates shuffle (xorshift64*), so the tests need
    /// no RNG crate.
    fn shuffled<T: Clone>(items: &[T], seed: u64) -> Vec<T> {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = move || {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_F491_4F6C_DD1D)
        };
        let mut v = items.to_vec();
        for i in (1..v.len()).rev() {
            let j = (next() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
        v
    }

    fn week() -> Week {
        Week::parse("2026-W49").unwrap()
    }

    /// Rows shaped like the upstream's, for every day of the week.
    fn sample(source: Source, n: usize) -> Vec<Value> {
        let days = week().day_strings();
        (0..n)
            .map(|i| {
                let date = &days[i % 7];
                let k = i / 7;
                match source {
                    Source::Meta => json!({"campaign_id": format!("2385{:011}", 7 * k + 3), "campaign": format!("Campaign {k}"),
                        "date": date, "impressions": 1000 + 37 * i, "clicks": 10 + i, "spend": (1234 + 97 * i) as f64 / 100.0}),
                    Source::Linkedin => json!({"campaign_id": format!("5{:08}", 11 * k + 1), "campaign": format!("LI {k}"),
                        "date": date, "impressions": 800 + 13 * i, "clicks": 5 + i % 4, "cost": (2210 + 333 * i) as f64 / 100.0}),
                    Source::Ga4 => json!({"page": format!("/p{k}"), "date": date, "sessions": 40 + 9 * i, "conversions": i % 5}),
                    Source::SearchConsole => json!({"query": format!("q {k}"), "date": date, "clicks": 3 + i,
                        "impressions": 100 + 21 * i, "position": (10 + 7 * i % 290) as f64 / 10.0}),
                    Source::Mailchimp => json!({"campaign": format!("News {k}"), "date": date, "sent": 500 + 31 * i,
                        "opens": 120 + 7 * i, "clicks": 9 + i % 6}),
                    Source::Warehouse => json!({"order_id": format!("ord-c01-2026W49-{:03}", i + 1), "date": date,
                        "revenue": (1599 + 4111 * i % 30000) as f64 / 100.0, "items": 1 + i % 6}),
                }
            })
            .collect()
    }

    #[test]
    fn row_order_does_not_matter() {
        let (meta, linkedin) = (sample(Source::Meta, 33), sample(Source::Linkedin, 41));
        let base = ads(week(), &meta, &linkedin).unwrap();
        let base_json = serde_json::to_string(&base.clone().into_output("ads", "c01", week(), answer())).unwrap();
        for seed in 1..20 {
            let t = ads(week(), &shuffled(&meta, seed), &shuffled(&linkedin, seed + 100)).unwrap();
            assert_eq!(t, base);
            // Bit for bit, floats included.
            assert_eq!(serde_json::to_string(&t.into_output("ads", "c01", week(), answer())).unwrap(), base_json);
        }
        let (ga4, sc) = (sample(Source::Ga4, 40), sample(Source::SearchConsole, 27));
        let base = web(week(), &ga4, &sc).unwrap();
        for seed in 1..20 {
            assert_eq!(web(week(), &shuffled(&ga4, seed), &shuffled(&sc, seed * 3)).unwrap(), base);
        }
        let (mc, wh) = (sample(Source::Mailchimp, 25), sample(Source::Warehouse, 45));
        let base = crm(week(), &mc, &wh).unwrap();
        for seed in 1..20 {
            assert_eq!(crm(week(), &shuffled(&mc, seed), &shuffled(&wh, seed * 7)).unwrap(), base);
        }
    }

    #[test]
    fn rows_are_sorted_and_hashed_one_by_one() {
        let t = ads(week(), &sample(Source::Meta, 30), &sample(Source::Linkedin, 30)).unwrap();
        assert_eq!(t.rows.len(), 60);
        assert_eq!(t.row_hashes.len(), 60);
        for pair in t.rows.windows(2) {
            assert!(pair[0].sort_key() <= pair[1].sort_key());
        }
        for (row, h) in t.rows.iter().zip(&t.row_hashes) {
            assert_eq!(&hash::row_hash(&serde_json::to_value(row).unwrap()), h);
        }
        assert_eq!(t.digest, hash::digest(&t.row_hashes));
        // Equal sort keys still get one order: by canonical JSON.
        let twin = |clicks: u64| AdsRow {
            date: "2026-11-30".into(),
            channel: "meta".into(),
            campaign_id: "1".into(),
            campaign: "x".into(),
            impressions: 1,
            clicks,
            cost: 0.5,
        };
        let (a, ..) = seal(vec![twin(2), twin(1)]).unwrap();
        let (b, ..) = seal(vec![twin(1), twin(2)]).unwrap();
        assert_eq!(a, b);
        assert_eq!(a[0].clicks, 1);
    }

    #[test]
    fn a_fixed_table_has_a_fixed_digest() {
        let meta = [json!({"campaign_id": "238500000000001", "campaign": "Spring Sale", "date": "2026-12-01",
            "impressions": 5120, "clicks": 87, "spend": 61.3})];
        let linkedin = [json!({"campaign_id": "512345678", "campaign": "Local Reach", "date": "2026-11-30",
            "impressions": 2301, "clicks": 19, "cost": 88.05})];
        let t = ads(week(), &meta, &linkedin).unwrap();
        assert_eq!(
            serde_json::to_string(&t.rows).unwrap(),
            r#"[{"date":"2026-11-30","channel":"linkedin","campaign_id":"512345678","campaign":"Local Reach","impressions":2301,"clicks":19,"cost":88.05},{"date":"2026-12-01","channel":"meta","campaign_id":"238500000000001","campaign":"Spring Sale","impressions":5120,"clicks":87,"cost":61.3}]"#
        );
        assert_eq!(
            t.row_hashes,
            [
                hash::sha256_hex(
                    br#"{"campaign":"Local Reach","campaign_id":"512345678","channel":"linkedin","clicks":19,"cost":88.05,"date":"2026-11-30","impressions":2301}"#
                ),
                hash::sha256_hex(
                    br#"{"campaign":"Spring Sale","campaign_id":"238500000000001","channel":"meta","clicks":87,"cost":61.3,"date":"2026-12-01","impressions":5120}"#
                ),
            ]
        );
        // Cross-checked with Python: sha256 of json.dumps(row, sort_keys=True,
        // separators=(",", ":")) per row, joined with "\n".
        assert_eq!(t.row_hashes[0], "ce5c9db11c694ed18d867949bba256a440c02b1dc3abfea985dae49199acbada");
        assert_eq!(t.digest, "56897457c4b09f7d05cca9332a054e0fadace2b57a24ce03806baf8448b302e4");
        assert_eq!(t.totals.cost, 149.35);
        assert_eq!(t.totals.clicks, 106);
        assert_eq!(t.totals.ctr_pct, 1.43);
        assert_eq!(t.totals.cpc, 1.41);
        assert_eq!(t.totals.meta.cost, 61.3);
        assert_eq!(t.daily.len(), 7);
        assert_eq!(t.daily[0].cost, 88.05);
        assert_eq!(t.daily[1].clicks, 87);
        assert_eq!(t.daily[6].clicks, 0);
        // The empty table.
        let empty = ads(week(), &[], &[]).unwrap();
        assert_eq!(empty.digest, hash::sha256_hex(b""));
        assert_eq!(empty.totals.ctr_pct, 0.0);
    }

    #[test]
    fn money_sums_are_exact() {
        // 0.1 + 0.2 in floats is 0.30000000000000004; in cents it is 30.
        let days = week().day_strings();
        let wh: Vec<Value> = [0.1, 0.2, 0.7, 19.99, 0.01]
            .iter()
            .enumerate()
            .map(|(i, r)| json!({"order_id": format!("o{i}"), "date": days[0], "revenue": r, "items": 1}))
            .collect();
        let t = crm(week(), &[], &wh).unwrap();
        assert_eq!(t.totals.revenue, 21.0);
        assert_eq!(serde_json::to_string(&t.totals.revenue).unwrap(), "21.0");
        assert_eq!(t.totals.orders, 5);
        assert_eq!(t.totals.average_order_value, 4.2);
        assert_eq!(t.daily[0].revenue, 21.0);
        assert_eq!(t.daily[0].orders, 5);
    }

    #[test]
    fn web_and_crm_totals() {
        let days = week().day_strings();
        let ga4 = [
            json!({"page": "/", "date": days[2], "sessions": 300, "conversions": 9}),
            json!({"page": "/shop", "date": days[2], "sessions": 100, "conversions": 3}),
        ];
        let sc = [
            json!({"query": "a", "date": days[3], "clicks": 10, "impressions": 100, "position": 2.5}),
            json!({"query": "b", "date": days[3], "clicks": 5, "impressions": 300, "position": 10.1}),
        ];
        let t = web(week(), &ga4, &sc).unwrap();
        assert_eq!(t.totals.sessions, 400);
        assert_eq!(t.totals.conversion_rate_pct, 3.0);
        assert_eq!(t.totals.search_ctr_pct, 3.75);
        // (2.5 × 100 + 10.1 × 300) / 400 = 8.2
        assert_eq!(t.totals.avg_position, Some(8.2));
        assert_eq!(t.daily[2].sessions, 400);
        assert_eq!(t.daily[3].search_clicks, 15);
        assert_eq!(t.rows[0].key, "/");
        assert_eq!(t.rows[2].position, Some(2.5));
        assert_eq!(web(week(), &ga4, &[]).unwrap().totals.avg_position, None);

        let mc = [json!({"campaign": "News", "date": days[4], "sent": 1000, "opens": 250, "clicks": 25})];
        let t = crm(week(), &mc, &[]).unwrap();
        assert_eq!(t.totals.open_rate_pct, 25.0);
        assert_eq!(t.totals.click_rate_pct, 10.0);
        assert_eq!(t.totals.average_order_value, 0.0);
        assert_eq!(t.daily[4].emails_sent, 1000);
    }

    #[test]
    fn bad_rows_are_fatal_and_named() {
        let days = week().day_strings();
        let e = ads(
            week(),
            &[json!({"campaign_id": "1", "campaign": "x", "date": days[0], "clicks": 1, "spend": 1.0})],
            &[],
        )
        .unwrap_err();
        assert!(e.is_fatal());
        assert!(e.message().starts_with("row 1 of meta cannot be read: missing field `impressions`"), "{e}");
        let e =
            crm(week(), &[], &[json!({"order_id": 7, "date": "2026-12-07", "revenue": 1.0, "items": 1})]).unwrap_err();
        assert_eq!(e.message(), "row 1 of warehouse has date \"2026-12-07\", which is not in 2026-W49");
        // A numeric id is read as text.
        let t = crm(week(), &[], &[json!({"order_id": 7, "date": days[1], "revenue": 1.0, "items": 1})]).unwrap();
        assert_eq!(t.rows[0].key, "7");
        let e = web(
            week(),
            &[],
            &[json!({"query": "q", "date": days[0], "clicks": 1, "impressions": 1, "position": -1.0})],
        )
        .unwrap_err();
        assert!(e.message().contains("invalid position"), "{e}");
    }

    #[test]
    fn summaries_drop_rows() {
        let t = ads(week(), &sample(Source::Meta, 5), &[]).unwrap();
        let out = t.into_output("ads", "c01", week(), answer());
        let summary: AdsSummary = serde_json::from_value(serde_json::to_value(&out).unwrap()).unwrap();
        assert_eq!(summary.digest, out.digest);
        assert_eq!(summary.totals, out.totals);
        let json = serde_json::to_value(&summary).unwrap();
        assert!(json.get("rows").is_none() && json.get("row_hashes").is_none());
    }

    fn answer() -> SnapshotAnswer {
        SnapshotAnswer { stored: true, changed: true, previous_digest: None }
    }
}
