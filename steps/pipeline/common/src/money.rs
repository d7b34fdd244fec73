//! Money as integer cents, and ratios rounded with integer arithmetic, so
//! that every figure the pipeline computes is the same bits whatever order
//! the rows came in.
//!
//! Amounts arrive as JSON numbers with two decimals (`12.34`); they become
//! cents once ([`to_cents`]), every sum is an integer sum, and a figure goes
//! back to a two-decimal `f64` only at the end ([`from_cents`]): `c / 100.0`
//! is the `f64` nearest to the decimal, which `serde_json` prints as that
//! decimal.

/// `amount` in cents (rounded half away from zero), or `None` when it is
/// not a finite amount below 10^13.
pub fn to_cents(amount: f64) -> Option<i64> {
    let cents = (amount * 100.0).round();
    (cents.is_finite() && cents.abs() < 1e15).then_some(cents as i64)
}

/// A two-decimal `f64` from cents.
pub fn from_cents(cents: i64) -> f64 {
    cents as f64 / 100.0
}

/// `value` rounded to hundredths (for values with two decimals or fewer, such
/// as a search position), or `None` when it is not finite and small.
pub fn to_hundredths(value: f64) -> Option<i64> {
    to_cents(value)
}

/// `num * scale / den` rounded half up to an integer, then divided by 100:
/// a two-decimal figure. Zero when `den` is zero.
///
/// - a percentage with two decimals: `ratio(clicks, impressions, 10_000)`;
/// - cents per unit as money: `ratio(cost_cents, clicks, 1)`.
pub fn ratio(num: u128, den: u128, scale: u128) -> f64 {
    if den == 0 {
        return 0.0;
    }
    let hundredths = (num * scale * 2 + den) / (den * 2);
    hundredths as f64 / 100.0
}

/// Formats cents as `1,234.56` (with a `-` for negative amounts).
pub fn format_cents(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    format!("{sign}{}.{:02}", group_thousands(abs / 100), abs % 100)
}

/// Formats an integer as `12,345`.
pub fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cents_round_trip() {
        assert_eq!(to_cents(12.34), Some(1234));
        assert_eq!(to_cents(0.1 + 0.2), Some(30));
        assert_eq!(to_cents(-2.5), Some(-250));
        assert_eq!(to_cents(f64::NAN), None);
        assert_eq!(to_cents(f64::INFINITY), None);
        assert_eq!(to_cents(1e20), None);
        for c in [0, 1, 10, 99, 1234, 10_000_001, -5] {
            assert_eq!(to_cents(from_cents(c)), Some(c));
            let printed = serde_json::to_string(&from_cents(c)).unwrap();
            let expected = format!("{}{}.{:02}", if c < 0 { "-" } else { "" }, c.abs() / 100, c.abs() % 100);
            assert_eq!(printed.parse::<f64>().unwrap(), expected.parse::<f64>().unwrap(), "{printed}");
        }
        assert_eq!(serde_json::to_string(&from_cents(1230)).unwrap(), "12.3");
    }

    #[test]
    fn ratios_round_half_up() {
        assert_eq!(ratio(1, 3, 10_000), 33.33);
        assert_eq!(ratio(2, 3, 10_000), 66.67);
        assert_eq!(ratio(1, 8, 10_000), 12.5);
        assert_eq!(ratio(5, 0, 10_000), 0.0);
        assert_eq!(ratio(1999, 10, 1), 2.0);
        assert_eq!(ratio(1994, 10, 1), 1.99);
    }

    #[test]
    fn formatting() {
        assert_eq!(group_thousands(0), "0");
        assert_eq!(group_thousands(999), "999");
        assert_eq!(group_thousands(1000), "1,000");
        assert_eq!(group_thousands(1_234_567), "1,234,567");
        assert_eq!(format_cents(123_456), "1,234.56");
        assert_eq!(format_cents(5), "0.05");
        assert_eq!(format_cents(-100_000), "-1,000.00");
    }
}
