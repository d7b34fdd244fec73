//! Each source's pagination rule (docs/PIPELINE.md, "The six sources"), as
//! pure functions: given what the page said, the cursor of the next page,
//! `None` after the last one, or an error when the answer cannot be
//! followed (a cursor that does not move would loop forever).

/// Why a page cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageError {
    /// The body is not the page the contract describes (truncated JSON, a
    /// missing field): the upstream sent a broken page; asking again can
    /// help, so the pull fails *retryable*.
    Malformed(String),
    /// The page is well formed but its paging cannot be followed (a cursor
    /// that does not advance): asking again would get the same answer, so
    /// the pull fails *fatal*.
    Stuck(String),
}

/// Parses a page body into `T`; any failure is [`PageError::Malformed`].
pub fn parse_page<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, PageError> {
    serde_json::from_slice(body).map_err(|e| PageError::Malformed(e.to_string()))
}

/// Offset paging (LinkedIn's `start`/`count`/`total`, GA4's
/// `offset`/`limit`/`rowCount`, Mailchimp's `offset`/`count`/`total_items`):
/// there is a next page at `offset + count` while `offset + count < total`.
pub fn offset_next(offset: u32, count: u32, total: u64) -> Result<Option<u32>, PageError> {
    let end = u64::from(offset) + u64::from(count);
    if end >= total {
        return Ok(None);
    }
    if count == 0 {
        return Err(PageError::Stuck(format!("a page of 0 rows at offset {offset} of {total}: paging cannot advance")));
    }
    u32::try_from(end).map(Some).map_err(|_| PageError::Stuck(format!("offset {end} is out of range")))
}

/// Search Console's rule: a full page (`row_limit` rows or more) means ask
/// again at `start_row + row_limit`; a shorter one is the last.
pub fn full_page_next(start_row: u32, row_limit: u32, rows: usize) -> Result<Option<u32>, PageError> {
    if row_limit == 0 {
        return Err(PageError::Stuck("rowLimit 0 cannot advance".into()));
    }
    if rows < row_limit as usize {
        return Ok(None);
    }
    start_row
        .checked_add(row_limit)
        .map(Some)
        .ok_or_else(|| PageError::Stuck(format!("startRow {start_row} + {row_limit} is out of range")))
}

/// The warehouse's rule: `next_page` (null on the last page) must come after
/// the page just read.
pub fn next_page_number(page: u32, next_page: Option<u32>) -> Result<Option<u32>, PageError> {
    match next_page {
        None => Ok(None),
        Some(next) if next > page => Ok(Some(next)),
        Some(next) => Err(PageError::Stuck(format!("page {page} says the next page is {next}"))),
    }
}

/// Meta's rule: follow `paging.next` (an absolute URL) until it is absent;
/// a link back to a page already read would loop.
pub fn next_link(visited: &[String], next: Option<&str>) -> Result<Option<String>, PageError> {
    match next.map(str::trim) {
        None | Some("") => Ok(None),
        Some(url) if !(url.starts_with("http://") || url.starts_with("https://")) => {
            Err(PageError::Malformed(format!("paging.next is not an absolute URL: {url:?}")))
        }
        Some(url) if visited.iter().any(|v| v == url) => {
            Err(PageError::Stuck(format!("paging.next links back to a page already read: {url}")))
        }
        Some(url) => Ok(Some(url.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Follows `next` from `first` and returns the cursors visited.
    fn walk(first: u32, mut next: impl FnMut(u32) -> Result<Option<u32>, PageError>) -> Vec<u32> {
        let mut seen = vec![first];
        let mut cursor = first;
        while let Some(c) = next(cursor).unwrap() {
            seen.push(c);
            cursor = c;
            assert!(seen.len() < 100);
        }
        seen
    }

    #[test]
    fn offset_paging_stops_at_the_total() {
        assert_eq!(walk(0, |o| offset_next(o, 10, 35)), [0, 10, 20, 30]);
        assert_eq!(walk(0, |o| offset_next(o, 10, 30)), [0, 10, 20]);
        assert_eq!(walk(0, |o| offset_next(o, 10, 0)), [0]);
        assert_eq!(walk(0, |o| offset_next(o, 10, 10)), [0]);
        assert_eq!(offset_next(0, 0, 0), Ok(None));
        assert!(matches!(offset_next(0, 0, 5), Err(PageError::Stuck(_))));
        assert!(matches!(offset_next(u32::MAX - 1, 10, u64::MAX), Err(PageError::Stuck(_))));
    }

    #[test]
    fn full_pages_ask_again() {
        // 25 rows: 10, 10, 5.
        let rows = |start: u32| (25u32.saturating_sub(start)).min(10) as usize;
        assert_eq!(walk(0, |s| full_page_next(s, 10, rows(s))), [0, 10, 20]);
        // 30 rows: 10, 10, 10, then an empty page ends it.
        let rows = |start: u32| (30u32.saturating_sub(start)).min(10) as usize;
        assert_eq!(walk(0, |s| full_page_next(s, 10, rows(s))), [0, 10, 20, 30]);
        assert_eq!(full_page_next(0, 10, 11), Ok(Some(10)));
        assert!(matches!(full_page_next(0, 0, 0), Err(PageError::Stuck(_))));
    }

    #[test]
    fn page_numbers_must_advance() {
        assert_eq!(next_page_number(1, Some(2)), Ok(Some(2)));
        assert_eq!(next_page_number(3, None), Ok(None));
        assert!(matches!(next_page_number(2, Some(2)), Err(PageError::Stuck(_))));
        assert!(matches!(next_page_number(2, Some(1)), Err(PageError::Stuck(_))));
    }

    #[test]
    fn links_are_followed_once() {
        let visited = vec!["http://h/meta?a=1".to_owned()];
        assert_eq!(next_link(&visited, None), Ok(None));
        assert_eq!(next_link(&visited, Some("")), Ok(None));
        assert_eq!(next_link(&visited, Some("http://h/meta?after=x")), Ok(Some("http://h/meta?after=x".into())));
        assert!(matches!(next_link(&visited, Some("http://h/meta?a=1")), Err(PageError::Stuck(_))));
        assert!(matches!(next_link(&visited, Some("/meta?after=x")), Err(PageError::Malformed(_))));
    }

    #[test]
    fn broken_bodies_are_malformed() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Page {
            rows: Vec<u32>,
        }
        assert!(parse_page::<Page>(br#"{"rows": [1, 2]}"#).is_ok());
        for body in [&br#"{"rows": [1, 2"#[..], br#"{"rowz": []}"#, b"", b"<html>"] {
            assert!(matches!(parse_page::<Page>(body), Err(PageError::Malformed(_))));
        }
    }
}
