//! Seeded fault injection: which request of the fake upstream fails, and how.
//!
//! Every decision but the global rate limit is a hash of the seed and of
//! what identifies the request — (client, source, week, page) and how many
//! times that page was asked for, the (client, source) of a token, the
//! idempotency key of a mail — so one seed replays the same faults for the
//! same sequence of requests. The global rate limit is the one fault that
//! depends on the clock: a real one-second window shared by all clients.

use std::time::{Duration, Instant};

use super::Profile;
use super::data::{Source, Week, client_id, u64_of, unit};

/// A fault the upstream injected, as the request log names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum Fault {
    /// 429: more meta requests in this second than the global limit.
    #[serde(rename = "rate-limit")]
    RateLimit,
    /// 429 on the first 1–3 asks of a meta page.
    #[serde(rename = "burst-429")]
    Burst429,
    /// 504 on the first 2–4 asks of a LinkedIn page.
    #[serde(rename = "504-cluster")]
    Cluster504,
    /// A correct answer, 100–400 ms late.
    #[serde(rename = "slow")]
    Slow,
    /// 401 `token_expired` for the first token of a (client, source).
    #[serde(rename = "token-expired")]
    TokenExpired,
    /// 200 with a truncated JSON body, on the first ask of a GA4 page.
    #[serde(rename = "malformed")]
    Malformed,
    /// The mail was accepted but the answer is a 504.
    #[serde(rename = "mail-504")]
    Mail504,
}

impl Fault {
    /// The name in the request log and in the stats.
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::RateLimit => "rate-limit",
            Fault::Burst429 => "burst-429",
            Fault::Cluster504 => "504-cluster",
            Fault::Slow => "slow",
            Fault::TokenExpired => "token-expired",
            Fault::Malformed => "malformed",
            Fault::Mail504 => "mail-504",
        }
    }
}

/// How often each fault happens under a profile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rates {
    /// Share of meta pages whose first 1–3 asks get a 429.
    pub burst_429: f64,
    /// Meta requests admitted per second, across all clients (0: no limit).
    pub meta_per_sec: u32,
    /// Share of LinkedIn pages whose first 2–4 asks get a 504.
    pub cluster_504: f64,
    /// Share of asks (any source) answered 100–400 ms late.
    pub slow: f64,
    /// Share of (client, source) pairs whose first token comes back expired.
    pub token_expired: f64,
    /// Share of GA4 pages whose first ask gets a truncated body.
    pub malformed: f64,
    /// Share of first mail sends that are accepted and then answered 504.
    pub mail_504: f64,
}

impl Profile {
    /// The fault rates of the profile (docs/PIPELINE.md).
    pub fn rates(self) -> Rates {
        match self {
            Profile::None => Rates {
                burst_429: 0.0,
                meta_per_sec: 0,
                cluster_504: 0.0,
                slow: 0.0,
                token_expired: 0.0,
                malformed: 0.0,
                mail_504: 0.0,
            },
            Profile::Default => Rates {
                burst_429: 0.08,
                meta_per_sec: 200,
                cluster_504: 0.08,
                slow: 0.03,
                token_expired: 0.05,
                malformed: 0.05,
                mail_504: 0.10,
            },
            Profile::Hostile => Rates {
                burst_429: 0.25,
                meta_per_sec: 50,
                cluster_504: 0.25,
                slow: 0.10,
                token_expired: 0.20,
                malformed: 0.15,
                mail_504: 0.30,
            },
        }
    }
}

/// What a page request gets, decided before the page is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageFault {
    /// A 429 with `Retry-After: 1`.
    Burst429,
    /// A 504.
    Cluster504,
    /// A 200 whose JSON body is cut in half.
    Malformed,
    /// The right answer, this much later.
    Slow(Duration),
}

impl PageFault {
    /// The fault's name in the request log.
    pub fn fault(self) -> Fault {
        match self {
            PageFault::Burst429 => Fault::Burst429,
            PageFault::Cluster504 => Fault::Cluster504,
            PageFault::Malformed => Fault::Malformed,
            PageFault::Slow(_) => Fault::Slow,
        }
    }
}

/// The seeded decisions of one upstream.
#[derive(Debug, Clone)]
pub struct Faults {
    seed: u64,
    rates: Rates,
}

impl Faults {
    /// Decisions for `seed` at `rates`.
    pub fn new(seed: u64, rates: Rates) -> Self {
        Self { seed, rates }
    }

    fn key(&self, client: u32, source: Source, week: Week, page: u32, what: &str) -> String {
        format!("{}/{}/{source}/{week}/{page}/{what}", self.seed, client_id(client))
    }

    /// The fault of the `ask`th request (from 1) for page `page` (from 0)
    /// of (client, source, week), if any.
    pub fn page(&self, client: u32, source: Source, week: Week, page: u32, ask: u32) -> Option<PageFault> {
        let chosen = |what: &str, rate: f64| rate > 0.0 && unit(&self.key(client, source, week, page, what)) < rate;
        let asks = |what: &str, first: u64, n: u64| {
            (first + u64_of(&self.key(client, source, week, page, &format!("{what}/asks"))) % n) as u32
        };
        match source {
            Source::Meta if chosen("burst-429", self.rates.burst_429) && ask <= asks("burst-429", 1, 3) => {
                return Some(PageFault::Burst429);
            }
            Source::Linkedin if chosen("504-cluster", self.rates.cluster_504) && ask <= asks("504-cluster", 2, 3) => {
                return Some(PageFault::Cluster504);
            }
            Source::Ga4 if ask == 1 && chosen("malformed", self.rates.malformed) => return Some(PageFault::Malformed),
            _ => {}
        }
        let slow = format!("{}/slow/{ask}", self.key(client, source, week, page, "slow"));
        (self.rates.slow > 0.0 && unit(&slow) < self.rates.slow)
            .then(|| PageFault::Slow(Duration::from_millis(100 + u64_of(&format!("{slow}/ms")) % 301)))
    }

    /// Whether the first token issued for (client, source) comes back
    /// expired.
    pub fn token_expires(&self, client: u32, source: Source) -> bool {
        self.rates.token_expired > 0.0
            && unit(&format!("{}/{}/{source}/token-expired", self.seed, client_id(client))) < self.rates.token_expired
    }

    /// Whether the first send with `key` is accepted and answered 504.
    pub fn mail_504(&self, key: &str) -> bool {
        self.rates.mail_504 > 0.0 && unit(&format!("{}/mail/{key}/mail-504", self.seed)) < self.rates.mail_504
    }
}

/// A fixed one-second window: at most `limit` requests are admitted per
/// window, across all clients.
#[derive(Debug)]
pub struct RateLimiter {
    limit: u32,
    /// When the current window opened (none before the first request).
    window_start: Option<Instant>,
    admitted: u32,
}

impl RateLimiter {
    /// A window of `limit` requests per second.
    pub fn new(limit: u32) -> Self {
        Self { limit, window_start: None, admitted: 0 }
    }

    /// Admits a request at `now`, or says in how many whole seconds
    /// (at least 1) the window resets.
    pub fn admit(&mut self, now: Instant) -> Result<(), u64> {
        let start = match self.window_start {
            Some(start) if now.saturating_duration_since(start) < Duration::from_secs(1) => start,
            _ => {
                self.window_start = Some(now);
                self.admitted = 0;
                now
            }
        };
        if self.admitted < self.limit {
            self.admitted += 1;
            return Ok(());
        }
        let left = Duration::from_secs(1).saturating_sub(now.saturating_duration_since(start));
        Err((left.as_secs_f64().ceil() as u64).max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn week() -> Week {
        Week::parse("2026-W49").unwrap()
    }

    #[test]
    fn no_profile_injects_nothing() {
        let f = Faults::new(1, Profile::None.rates());
        for client in 1..=60 {
            for source in Source::ALL {
                assert!(!f.token_expires(client, source));
                for page in 0..5 {
                    assert_eq!(f.page(client, source, week(), page, 1), None);
                }
            }
        }
        assert!(!f.mail_504("any"));
    }

    #[test]
    fn rates_roughly_match_the_profile() {
        let f = Faults::new(7, Profile::Hostile.rates());
        let pages = (1..=60).flat_map(|c| (0..5).map(move |p| (c, p)));
        let burst = pages.clone().filter(|&(c, p)| f.page(c, Source::Meta, week(), p, 1).is_some()).count();
        // 300 pages at 25% (plus slow asks): somewhere near 75–105.
        assert!((50..=130).contains(&burst), "{burst}");
        let malformed = pages.filter(|&(c, p)| f.page(c, Source::Ga4, week(), p, 1) == Some(PageFault::Malformed));
        assert!((20..=80).contains(&malformed.count()));
    }

    #[test]
    fn bursts_and_clusters_stop_so_retries_succeed() {
        let f = Faults::new(3, Profile::Hostile.rates());
        for client in 1..=60 {
            for page in 0..5 {
                let b = (1..=10).filter(|&ask| {
                    f.page(client, Source::Meta, week(), page, ask).is_some_and(|x| x == PageFault::Burst429)
                });
                let b: Vec<u32> = b.collect();
                assert!(b.len() <= 3 && b.iter().enumerate().all(|(i, &ask)| ask == i as u32 + 1), "{b:?}");
                let c: Vec<u32> = (1..=10)
                    .filter(|&ask| f.page(client, Source::Linkedin, week(), page, ask) == Some(PageFault::Cluster504))
                    .collect();
                assert!(c.is_empty() || (2..=4).contains(&c.len()), "{c:?}");
                for ask in 2..=5 {
                    assert_ne!(f.page(client, Source::Ga4, week(), page, ask), Some(PageFault::Malformed));
                }
            }
        }
    }

    #[test]
    fn the_rate_limiter_holds_a_one_second_window() {
        let start = Instant::now();
        let mut r = RateLimiter::new(2);
        assert_eq!(r.admit(start), Ok(()));
        assert_eq!(r.admit(start + Duration::from_millis(10)), Ok(()));
        assert_eq!(r.admit(start + Duration::from_millis(20)), Err(1));
        assert_eq!(r.admit(start + Duration::from_millis(1_000)), Ok(()));
    }
}
