//! The weekly report as a one-page A4 PDF, written with `pdf-writer`.
//!
//! Pure and deterministic: the bytes depend on the [`Report`] only (no
//! clock, no random file id, no `/CreationDate`). Text uses the standard
//! Type 1 fonts Helvetica and Helvetica-Bold with `WinAnsiEncoding`, so no
//! font is embedded and text extraction reads the client's name back.
//!
//! Layout (points, origin bottom left): a title band with the client's name
//! and the week, three boxes with the week's figures (advertising, website,
//! email and sales) each saying whether its table changed since last week,
//! three bar charts of the daily series (ad clicks, website sessions,
//! revenue) with axes and labels, and a footer with the tables' digests.

use pdf_writer::{Content, Finish, Name, Pdf, Rect, Ref, Str, TextStr};
use pipeline_common::money::{format_cents, group_thousands, to_cents};
use pipeline_common::tables::{AdsSummary, CrmSummary, Summary, WebSummary};
use pipeline_common::week::{Date, Week};

/// Everything on the page.
#[derive(Debug, Clone)]
pub struct Report {
    pub client: String,
    pub name: String,
    pub week: Week,
    pub ads: AdsSummary,
    pub web: WebSummary,
    pub crm: CrmSummary,
}

const PAGE_W: f32 = 595.0;
const PAGE_H: f32 = 842.0;
const MARGIN: f32 = 50.0;
const CONTENT_W: f32 = PAGE_W - 2.0 * MARGIN;

type Rgb = (f32, f32, f32);
const INK: Rgb = (0.12, 0.14, 0.17);
const MUTED: Rgb = (0.42, 0.45, 0.50);
const BAND: Rgb = (0.11, 0.20, 0.36);
const WHITE: Rgb = (1.0, 1.0, 1.0);
const BOX: Rgb = (0.95, 0.96, 0.98);
const GRID: Rgb = (0.82, 0.84, 0.88);
const ADS_COLOR: Rgb = (0.20, 0.45, 0.80);
const WEB_COLOR: Rgb = (0.16, 0.58, 0.44);
const CRM_COLOR: Rgb = (0.88, 0.52, 0.14);
const CHANGED: Rgb = (0.80, 0.33, 0.10);
const SAME: Rgb = (0.16, 0.58, 0.44);

/// One of the two fonts of the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Font {
    Regular,
    Bold,
}

impl Font {
    fn resource(self) -> Name<'static> {
        match self {
            Font::Regular => Name(b"F1"),
            Font::Bold => Name(b"F2"),
        }
    }
}

/// Advance widths (1/1000 em) of Helvetica for ASCII 32..=126, from the
/// standard AFM metrics.
const HELVETICA: [u16; 95] = [
    278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278, // ' '..'/'
    556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556, // '0'..'?'
    1015, 667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833, 722, 778, // '@'..'O'
    667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 278, 278, 278, 469, 556, // 'P'..'_'
    333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500, 222, 833, 556, 556, // '`'..'o'
    556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584, // 'p'..'~'
];

/// The same for Helvetica-Bold.
const HELVETICA_BOLD: [u16; 95] = [
    278, 333, 474, 556, 556, 889, 722, 238, 333, 333, 389, 584, 278, 333, 278, 278, // ' '..'/'
    556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 333, 333, 584, 584, 584, 611, // '0'..'?'
    975, 722, 722, 722, 722, 667, 611, 778, 722, 278, 556, 722, 611, 833, 722, 778, // '@'..'O'
    667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 333, 278, 333, 584, 556, // 'P'..'_'
    333, 556, 611, 556, 611, 556, 333, 611, 611, 278, 278, 556, 278, 889, 611, 611, // '`'..'o'
    611, 611, 389, 556, 333, 611, 556, 778, 556, 556, 500, 389, 280, 389, 584, // 'p'..'~'
];

/// `text` in WinAnsiEncoding (Windows-1252): ASCII and Latin-1 as they are,
/// the typographic characters of 0x80–0x9F at their codes, control
/// characters as spaces, anything else as `?`.
pub fn winansi(text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| match c {
            ' '..='~' => c as u8,
            '\u{A0}'..='\u{FF}' => c as u32 as u8,
            '€' => 0x80,
            '‚' => 0x82,
            'ƒ' => 0x83,
            '„' => 0x84,
            '…' => 0x85,
            '†' => 0x86,
            '‡' => 0x87,
            'ˆ' => 0x88,
            '‰' => 0x89,
            'Š' => 0x8A,
            '‹' => 0x8B,
            'Œ' => 0x8C,
            'Ž' => 0x8E,
            '\u{2018}' => 0x91,
            '\u{2019}' => 0x92,
            '\u{201C}' => 0x93,
            '\u{201D}' => 0x94,
            '•' => 0x95,
            '–' => 0x96,
            '—' => 0x97,
            '˜' => 0x98,
            '™' => 0x99,
            'š' => 0x9A,
            '›' => 0x9B,
            'œ' => 0x9C,
            'ž' => 0x9E,
            'Ÿ' => 0x9F,
            c if c.is_control() => b' ',
            _ => b'?',
        })
        .collect()
}

/// The width of `text` in points at `size`.
pub fn text_width(font: Font, size: f32, text: &str) -> f32 {
    let table = match font {
        Font::Regular => &HELVETICA,
        Font::Bold => &HELVETICA_BOLD,
    };
    let units: u32 = winansi(text)
        .into_iter()
        .map(|b| match b {
            32..=126 => u32::from(table[usize::from(b - 32)]),
            0x97 => 1000,
            0x85 | 0x89 => 1000,
            0xB7 | 0x95 => 350,
            _ => 556,
        })
        .sum();
    units as f32 * size / 1000.0
}

/// A content stream with helpers for text, boxes and lines.
struct Canvas {
    content: Content,
}

impl Canvas {
    fn text(&mut self, font: Font, size: f32, color: Rgb, x: f32, y: f32, text: &str) {
        let bytes = winansi(text);
        self.content.set_fill_rgb(color.0, color.1, color.2);
        self.content.begin_text();
        self.content.set_font(font.resource(), size);
        self.content.next_line(x, y);
        self.content.show(Str(&bytes));
        self.content.end_text();
    }

    fn text_right(&mut self, font: Font, size: f32, color: Rgb, right: f32, y: f32, text: &str) {
        self.text(font, size, color, right - text_width(font, size, text), y, text);
    }

    fn text_center(&mut self, font: Font, size: f32, color: Rgb, center: f32, y: f32, text: &str) {
        self.text(font, size, color, center - text_width(font, size, text) / 2.0, y, text);
    }

    fn fill_rect(&mut self, x: f32, y: f32, w: f32, h: f32, color: Rgb) {
        self.content.set_fill_rgb(color.0, color.1, color.2);
        self.content.rect(x, y, w, h);
        self.content.fill_nonzero();
    }

    fn line(&mut self, x1: f32, y1: f32, x2: f32, y2: f32, width: f32, color: Rgb) {
        self.content.set_stroke_rgb(color.0, color.1, color.2);
        self.content.set_line_width(width);
        self.content.move_to(x1, y1);
        self.content.line_to(x2, y2);
        self.content.stroke();
    }
}

/// Renders the report; the PDF's bytes.
pub fn render(report: &Report) -> Vec<u8> {
    let catalog_id = Ref::new(1);
    let page_tree_id = Ref::new(2);
    let page_id = Ref::new(3);
    let content_id = Ref::new(4);
    let regular_id = Ref::new(5);
    let bold_id = Ref::new(6);
    let info_id = Ref::new(7);

    let mut pdf = Pdf::new();
    pdf.catalog(catalog_id).pages(page_tree_id);
    pdf.pages(page_tree_id).kids([page_id]).count(1);
    let mut page = pdf.page(page_id);
    page.media_box(Rect::new(0.0, 0.0, PAGE_W, PAGE_H));
    page.parent(page_tree_id);
    page.contents(content_id);
    let mut resources = page.resources();
    let mut fonts = resources.fonts();
    fonts.pair(Font::Regular.resource(), regular_id);
    fonts.pair(Font::Bold.resource(), bold_id);
    fonts.finish();
    resources.finish();
    page.finish();
    pdf.type1_font(regular_id).base_font(Name(b"Helvetica")).encoding_predefined(Name(b"WinAnsiEncoding"));
    pdf.type1_font(bold_id).base_font(Name(b"Helvetica-Bold")).encoding_predefined(Name(b"WinAnsiEncoding"));
    let title = format!("Weekly report {} \u{2014} {}", report.week, report.name);
    pdf.document_info(info_id)
        .title(TextStr(&title))
        .subject(TextStr(&format!("Advertising, website and sales figures of {} for {}", report.name, report.week)))
        .creator(TextStr("Ferry reference pipeline (render-pdf)"));

    let mut canvas = Canvas { content: Content::new() };
    draw(&mut canvas, report);
    let content = canvas.content.finish();
    pdf.stream(content_id, &content);
    pdf.finish()
}

fn draw(c: &mut Canvas, r: &Report) {
    let days = r.week.days();
    let (first, last) = (days[0], days[6]);

    // Title band.
    c.fill_rect(0.0, PAGE_H - 92.0, PAGE_W, 92.0, BAND);
    c.text(Font::Regular, 10.0, (0.75, 0.82, 0.93), MARGIN, PAGE_H - 32.0, "WEEKLY REPORT");
    let mut size = 24.0;
    while size > 12.0 && text_width(Font::Bold, size, &r.name) > CONTENT_W {
        size -= 1.0;
    }
    c.text(Font::Bold, size, WHITE, MARGIN, PAGE_H - 60.0, &r.name);
    let subtitle =
        format!("Week {} \u{00B7} {} to {} \u{00B7} client {}", r.week, long_date(first), long_date(last), r.client);
    c.text(Font::Regular, 10.0, (0.85, 0.89, 0.95), MARGIN, PAGE_H - 80.0, &subtitle);

    // The week at a glance.
    let top = PAGE_H - 122.0;
    c.text(Font::Bold, 13.0, INK, MARGIN, top, "This week at a glance");
    let gap = 12.0;
    let box_w = (CONTENT_W - 2.0 * gap) / 3.0;
    let box_top = top - 14.0;
    let a = &r.ads.totals;
    let w = &r.web.totals;
    let m = &r.crm.totals;
    let columns: [Column; 3] = [
        Column(
            "Advertising",
            ADS_COLOR,
            change_text(&r.ads),
            vec![
                ("Impressions", count(a.impressions)),
                ("Clicks", count(a.clicks)),
                ("Click-through rate", pct(a.ctr_pct)),
                ("Cost", money(a.cost)),
                ("Cost per click", money(a.cpc)),
                ("Meta cost", money(a.meta.cost)),
                ("LinkedIn cost", money(a.linkedin.cost)),
            ],
        ),
        Column(
            "Website",
            WEB_COLOR,
            change_text(&r.web),
            vec![
                ("Sessions", count(w.sessions)),
                ("Conversions", count(w.conversions)),
                ("Conversion rate", pct(w.conversion_rate_pct)),
                ("Search clicks", count(w.search_clicks)),
                ("Search impressions", count(w.search_impressions)),
                ("Search click rate", pct(w.search_ctr_pct)),
                ("Average position", w.avg_position.map_or_else(|| "n/a".to_owned(), decimal)),
            ],
        ),
        Column(
            "Email & sales",
            CRM_COLOR,
            change_text(&r.crm),
            vec![
                ("Emails sent", count(m.emails_sent)),
                ("Open rate", pct(m.open_rate_pct)),
                ("Email clicks", count(m.email_clicks)),
                ("Orders", count(m.orders)),
                ("Items sold", count(m.items)),
                ("Revenue", money(m.revenue)),
                ("Average order", money(m.average_order_value)),
            ],
        ),
    ];
    let line_h = 14.0;
    let box_h = 34.0 + 7.0 * line_h + 24.0;
    for (i, Column(heading, color, (change, mark), lines)) in columns.iter().enumerate() {
        let x = MARGIN + i as f32 * (box_w + gap);
        let y = box_top - box_h;
        c.fill_rect(x, y, box_w, box_h, BOX);
        c.fill_rect(x, box_top - 4.0, box_w, 4.0, *color);
        c.text(Font::Bold, 11.0, INK, x + 10.0, box_top - 22.0, heading);
        for (j, (label, value)) in lines.iter().enumerate() {
            let ly = box_top - 40.0 - j as f32 * line_h;
            c.text(Font::Regular, 8.5, MUTED, x + 10.0, ly, label);
            c.text_right(Font::Bold, 8.5, INK, x + box_w - 10.0, ly, value);
        }
        let fy = y + 10.0;
        c.fill_rect(x + 10.0, fy - 0.5, 6.0, 6.0, *mark);
        c.text(Font::Regular, 7.5, INK, x + 20.0, fy, change);
    }

    // Daily charts.
    let charts_top = box_top - box_h - 22.0;
    let chart_h = 150.0;
    let dates: Vec<Date> = days.to_vec();
    let ad_clicks: Vec<i64> = r.ads.daily.iter().map(|d| d.clicks as i64).collect();
    let sessions: Vec<i64> = r.web.daily.iter().map(|d| d.sessions as i64).collect();
    let revenue: Vec<i64> = r.crm.daily.iter().map(|d| to_cents(d.revenue).unwrap_or_default()).collect();
    bar_chart(c, charts_top, chart_h, "Ad clicks per day (Meta + LinkedIn)", &dates, &ad_clicks, 1, ADS_COLOR, |v| {
        group_thousands(v.max(0) as u64)
    });
    bar_chart(
        c,
        charts_top - chart_h - 18.0,
        chart_h,
        "Website sessions per day",
        &dates,
        &sessions,
        1,
        WEB_COLOR,
        |v| group_thousands(v.max(0) as u64),
    );
    bar_chart(
        c,
        charts_top - 2.0 * (chart_h + 18.0),
        chart_h,
        "Revenue per day",
        &dates,
        &revenue,
        100,
        CRM_COLOR,
        format_cents,
    );

    // Footer.
    let short = |d: &str| d.chars().take(16).collect::<String>();
    let footer = format!(
        "Table digests \u{2014} ads {} \u{00B7} web {} \u{00B7} crm {}",
        short(&r.ads.digest),
        short(&r.web.digest),
        short(&r.crm.digest)
    );
    c.line(MARGIN, 44.0, PAGE_W - MARGIN, 44.0, 0.5, GRID);
    c.text(Font::Regular, 7.0, MUTED, MARGIN, 32.0, &footer);
    c.text_right(Font::Regular, 7.0, MUTED, PAGE_W - MARGIN, 32.0, &format!("{} \u{00B7} {}", r.client, r.week));
}

/// A box of figures: heading, colour, the "changed since last week" line
/// and its mark's colour, and (label, value) lines.
struct Column(&'static str, Rgb, (String, Rgb), Vec<(&'static str, String)>);

/// "Changed since last week" for a table, and the colour of its mark:
/// the first snapshot of the table, changed, or the same data.
fn change_text<T, D>(s: &Summary<T, D>) -> (String, Rgb) {
    match s.previous_digest.as_ref().map(|_| s.changed) {
        None => ("Changed since last week: first report".to_owned(), MUTED),
        Some(true) => ("Changed since last week: yes".to_owned(), CHANGED),
        Some(false) => ("Changed since last week: no".to_owned(), SAME),
    }
}

/// A bar per day with the value above it, three horizontal grid lines with
/// their values, and the days under the bars. `values` are integers in
/// units of `1/unit` (cents for money, `unit` 100); `label` formats one.
#[allow(clippy::too_many_arguments)]
fn bar_chart(
    c: &mut Canvas,
    top: f32,
    height: f32,
    title: &str,
    dates: &[Date],
    values: &[i64],
    unit: i64,
    color: Rgb,
    label: impl Fn(i64) -> String,
) {
    c.text(Font::Bold, 11.0, INK, MARGIN, top - 11.0, title);
    let axis_w = 48.0;
    let plot_x = MARGIN + axis_w;
    let plot_w = CONTENT_W - axis_w;
    let plot_top = top - 30.0;
    let plot_bottom = top - height + 16.0;
    let plot_h = plot_top - plot_bottom;

    let peak = values.iter().copied().max().unwrap_or(0).max(0);
    // A tenth of headroom keeps the value labels of the tallest bars clear
    // of the top grid line.
    let max = nice_ceiling(ceil_div(peak + peak / 10, unit)) * unit;
    // The grid line at half the maximum may fall on a half unit.
    let axis_label = |twice: i64| match (twice % 2 == 0, unit == 1) {
        (true, true) => group_thousands((twice / 2) as u64),
        (false, true) => format!("{}.5", group_thousands((twice / 2) as u64)),
        (_, false) if (twice / 2) % unit == 0 => group_thousands((twice / 2 / unit) as u64),
        (_, false) => format_cents(twice / 2),
    };
    for k in 0..=2 {
        let twice = max * k;
        let y = plot_bottom + plot_h * k as f32 / 2.0;
        c.line(plot_x, y, plot_x + plot_w, y, if k == 0 { 0.8 } else { 0.4 }, if k == 0 { MUTED } else { GRID });
        c.text_right(Font::Regular, 7.0, MUTED, plot_x - 6.0, y - 2.5, &axis_label(twice));
    }

    let slot = plot_w / values.len().max(1) as f32;
    let bar_w = slot * 0.62;
    for (i, (&v, date)) in values.iter().zip(dates).enumerate() {
        let center = plot_x + slot * (i as f32 + 0.5);
        let h = if max > 0 { plot_h * v.max(0) as f32 / max as f32 } else { 0.0 };
        if h > 0.0 {
            c.fill_rect(center - bar_w / 2.0, plot_bottom, bar_w, h, color);
        }
        c.text_center(Font::Regular, 7.0, INK, center, plot_bottom + h + 3.0, &label(v));
        let day = format!("{} {}", date.weekday_short(), date.day);
        c.text_center(Font::Regular, 7.5, MUTED, center, plot_bottom - 11.0, &day);
    }
}

fn ceil_div(a: i64, b: i64) -> i64 {
    if b <= 1 { a } else { (a + b - 1) / b }
}

/// A round axis maximum of at least `v` (and at least 2): the smallest of
/// 1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6 or 8 times a power of ten that is an
/// integer and not below `v`.
pub fn nice_ceiling(v: i64) -> i64 {
    if v <= 2 {
        return 2;
    }
    let mut p: i64 = 1;
    while p < i64::MAX / 1000 {
        for m in [10, 12, 15, 20, 25, 30, 40, 50, 60, 80] {
            if (m * p) % 10 == 0 && m * p / 10 >= v {
                return m * p / 10;
            }
        }
        p *= 10;
    }
    v
}

/// `Mon 30 Nov 2026`.
fn long_date(d: Date) -> String {
    format!("{} {} {} {}", d.weekday_short(), d.day, d.month_short(), d.year)
}

fn count(n: u64) -> String {
    group_thousands(n)
}

fn money(amount: f64) -> String {
    format_cents(to_cents(amount).unwrap_or_default())
}

fn decimal(value: f64) -> String {
    let h = to_cents(value).unwrap_or_default();
    format!("{}.{:02}", h / 100, (h % 100).abs())
}

fn pct(value: f64) -> String {
    format!("{}%", decimal(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipeline_common::tables::{AdsDay, AdsTotals, ChannelTotals, CrmDay, CrmTotals, WebDay, WebTotals};

    fn summary<T, D>(table: &str, totals: T, daily: Vec<D>, previous: Option<&str>, changed: bool) -> Summary<T, D> {
        Summary {
            table: table.into(),
            client: "c01".into(),
            week: "2026-W49".into(),
            digest: format!("{table}0123456789abcdef0123456789abcdef"),
            changed,
            previous_digest: previous.map(str::to_owned),
            totals,
            daily,
        }
    }

    pub(crate) fn report(name: &str) -> Report {
        let week = Week::parse("2026-W49").unwrap();
        let days = week.day_strings();
        let ch = |rows, cost| ChannelTotals { rows, impressions: 1000 * rows, clicks: 20 * rows, cost };
        let ads = summary(
            "ads",
            AdsTotals {
                rows: 60,
                impressions: 60_000,
                clicks: 1200,
                cost: 1543.21,
                ctr_pct: 2.0,
                cpc: 1.29,
                meta: ch(30, 800.0),
                linkedin: ch(30, 743.21),
            },
            days.iter()
                .enumerate()
                .map(|(i, d)| AdsDay { date: d.clone(), impressions: 9000, clicks: 100 + 37 * i as u64, cost: 200.5 })
                .collect(),
            Some("ffff"),
            true,
        );
        let web = summary(
            "web",
            WebTotals {
                rows: 70,
                sessions: 4321,
                conversions: 120,
                conversion_rate_pct: 2.78,
                search_clicks: 800,
                search_impressions: 12_000,
                search_ctr_pct: 6.67,
                avg_position: Some(8.2),
            },
            days.iter()
                .enumerate()
                .map(|(i, d)| WebDay {
                    date: d.clone(),
                    sessions: 500 + 11 * i as u64,
                    conversions: 10,
                    search_clicks: 100,
                    search_impressions: 1500,
                })
                .collect(),
            Some("eeee"),
            false,
        );
        let crm = summary(
            "crm",
            CrmTotals {
                rows: 64,
                emails_sent: 50_000,
                opens: 14_000,
                open_rate_pct: 28.0,
                email_clicks: 1500,
                click_rate_pct: 10.71,
                orders: 35,
                revenue: 5678.9,
                items: 99,
                average_order_value: 162.25,
            },
            days.iter()
                .enumerate()
                .map(|(i, d)| CrmDay {
                    date: d.clone(),
                    emails_sent: 7000,
                    opens: 2000,
                    email_clicks: 200,
                    orders: 5,
                    revenue: if i == 3 { 0.0 } else { 811.27 + i as f64 },
                })
                .collect(),
            None,
            true,
        );
        Report { client: "c01".into(), name: name.into(), week, ads, web, crm }
    }

    #[test]
    fn winansi_maps_typography_and_latin1() {
        assert_eq!(winansi("Aurora Bakery"), b"Aurora Bakery");
        assert_eq!(winansi("café — 5 €"), b"caf\xe9 \x97 5 \x80");
        assert_eq!(winansi("a\tb✓"), b"a b?");
    }

    #[test]
    fn widths_follow_the_metrics() {
        assert_eq!(text_width(Font::Regular, 10.0, "0"), 5.56);
        assert_eq!(text_width(Font::Bold, 1000.0, "W"), 944.0);
        assert!(text_width(Font::Bold, 10.0, "Aurora") > text_width(Font::Regular, 10.0, "Aurora"));
    }

    #[test]
    fn axis_maxima_are_round() {
        let cases = [
            (0, 2),
            (1, 2),
            (3, 3),
            (7, 8),
            (9, 10),
            (11, 12),
            (13, 15),
            (450, 500),
            (1001, 1200),
            (11_059, 12_000),
            (80_000, 80_000),
            (80_001, 100_000),
        ];
        for (v, max) in cases {
            assert_eq!(nice_ceiling(v), max, "{v}");
        }
    }

    #[test]
    fn the_pdf_is_deterministic_and_well_formed() {
        let a = render(&report("Aurora Bakery"));
        let b = render(&report("Aurora Bakery"));
        assert_eq!(a, b);
        assert!(a.starts_with(b"%PDF-"));
        assert!(a.ends_with(b"%%EOF") || a.ends_with(b"%%EOF\n"));
        let text = String::from_utf8_lossy(&a);
        assert!(text.contains("/BaseFont /Helvetica"), "standard font");
        assert!(text.contains("/WinAnsiEncoding"));
        // Uncompressed content: the name and the figures are in the stream.
        assert!(text.contains("(Aurora Bakery) Tj"));
        assert!(text.contains("(1,543.21) Tj"));
        assert!(text.contains("Changed since last week: first report"));
        assert!(text.contains(" re"), "bars are rectangles");
        assert!(!text.contains("CreationDate") && !text.contains("/ID"));
        assert_ne!(render(&report("Birch Books")), a);
    }

    #[test]
    fn long_names_shrink_to_fit() {
        let long = "Saffron Interiors and Custom Furniture Workshop Amsterdam Noord";
        let pdf = render(&report(long));
        assert!(String::from_utf8_lossy(&pdf).contains(long));
    }

    /// `RENDER_PDF_SAMPLE=/tmp/report.pdf cargo test -p render-pdf` writes the
    /// sample report, to look at.
    #[test]
    fn writes_a_sample_when_asked() {
        if let Ok(path) = std::env::var("RENDER_PDF_SAMPLE") {
            std::fs::write(path, render(&report("Aurora Bakery"))).unwrap();
        }
    }
}
