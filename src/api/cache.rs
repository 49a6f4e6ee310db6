//! HTTP caching and content negotiation: ETags, `Last-Modified`, `Cache-Control`, gzip.
//!
//! A snapshot does not change once published, so its generation identifies every body made
//! from it. Revalidation is answered by comparing a few bytes; a 304 costs no rendering.

use std::fmt::Write as _;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::{Duration, SystemTime};

use axum::http::{HeaderMap, HeaderValue, header};

use super::body::Encoding;
use crate::snapshot::NodeName;

/// The validators and freshness of one representation.
#[derive(Debug)]
pub struct Validators<'a> {
    /// Weak, because `age_seconds` in the body changes from one response to the next while
    /// the data it describes does not.
    pub etag: HeaderValue,
    /// When the poll behind the snapshot finished.
    pub last_modified: SystemTime,
    /// The same as an HTTP date.
    pub last_modified_header: &'a HeaderValue,
    /// Whole seconds until the next poll is due.
    pub max_age: u64,
}

impl<'a> Validators<'a> {
    /// Validators for `view` of the snapshot named `tag` ([`crate::snapshot::Snapshot::tag`]),
    /// filtered to `nodes` if given, in `encoding`.
    pub fn new(
        tag: &str,
        view: &str,
        nodes: Option<&[NodeName]>,
        encoding: Encoding,
        last_modified: (SystemTime, &'a HeaderValue),
        until_next_poll: Duration,
    ) -> Self {
        // Written piece by piece into one buffer: this runs on every request, 304s included.
        let mut etag = String::with_capacity(64);
        etag.push_str("W/\"");
        etag.push_str(tag);
        etag.push('-');
        etag.push_str(view);
        if let Some(names) = nodes {
            write!(etag, "-{:016x}", digest(names)).expect("a String takes any text");
        }
        if encoding == Encoding::Gzip {
            etag.push_str("-gzip");
        }
        etag.push('"');
        Validators {
            etag: HeaderValue::from_str(&etag).expect("an ETag of ASCII letters and digits"),
            last_modified: last_modified.0,
            last_modified_header: last_modified.1,
            max_age: until_next_poll.as_secs(),
        }
    }

    /// True when the client's copy is current: `If-None-Match` matches, or, without one,
    /// `If-Modified-Since` is not older than the snapshot (to the second).
    pub fn not_modified(&self, request: &HeaderMap) -> bool {
        if let Some(tags) = request.get(header::IF_NONE_MATCH) {
            return tags.to_str().is_ok_and(|tags| matches(tags, &self.etag));
        }
        let since = request
            .get(header::IF_MODIFIED_SINCE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok());
        since.is_some_and(|since| whole_seconds(self.last_modified) <= whole_seconds(since))
    }

    /// Adds `ETag`, `Last-Modified`, `Cache-Control` and `Vary` to `headers`.
    pub fn apply(&self, headers: &mut HeaderMap) {
        headers.insert(header::ETAG, self.etag.clone());
        headers.insert(header::LAST_MODIFIED, self.last_modified_header.clone());
        let control = format!("public, max-age={}", self.max_age);
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_str(&control).expect("ASCII"),
        );
        headers.append(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
}

/// Weak comparison against a list of entity tags, `*` included.
fn matches(list: &str, etag: &HeaderValue) -> bool {
    let ours = opaque(etag.to_str().expect("our ETag is ASCII"));
    list.split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || opaque(tag) == ours)
}

fn opaque(tag: &str) -> &str {
    tag.strip_prefix("W/").unwrap_or(tag)
}

fn whole_seconds(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn digest(names: &[NodeName]) -> u64 {
    let mut hasher = DefaultHasher::new();
    names.hash(&mut hasher);
    hasher.finish()
}

/// gzip when `Accept-Encoding` accepts it with a non-zero q-value (`*` counts), else
/// identity.
pub fn negotiate(request: &HeaderMap) -> Encoding {
    let mut gzip = None;
    let mut any = None;
    for value in request.get_all(header::ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let (coding, q) = coding_and_q(item);
            match coding.as_str() {
                "gzip" | "x-gzip" => gzip = Some(q),
                "*" => any = Some(q),
                _ => {}
            }
        }
    }
    match gzip.or(any) {
        Some(q) if q > 0.0 => Encoding::Gzip,
        _ => Encoding::Identity,
    }
}

fn coding_and_q(item: &str) -> (String, f32) {
    let mut parts = item.split(';');
    let coding = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
    let q = parts
        .filter_map(|p| p.trim().strip_prefix("q=").or(p.trim().strip_prefix("Q=")))
        .find_map(|v| v.trim().parse::<f32>().ok())
        .unwrap_or(1.0);
    (coding, q)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::Snapshot;

    fn accept(value: &str) -> Encoding {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_str(value).expect("ascii"),
        );
        negotiate(&headers)
    }

    #[test]
    fn gzip_is_chosen_by_q_value() {
        assert_eq!(accept("gzip, deflate, br"), Encoding::Gzip);
        assert_eq!(accept("br;q=1.0, gzip;q=0.5"), Encoding::Gzip);
        assert_eq!(accept("gzip;q=0"), Encoding::Identity);
        assert_eq!(accept("*;q=0.1"), Encoding::Gzip);
        assert_eq!(accept("*, gzip;q=0"), Encoding::Identity);
        assert_eq!(accept("br, identity"), Encoding::Identity);
        assert_eq!(negotiate(&HeaderMap::new()), Encoding::Identity);
    }

    #[test]
    fn etags_differ_by_generation_time_view_filter_and_coding() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(0x1a2b);
        let tag = |generation, view, nodes: Option<&[NodeName]>, encoding| {
            Validators::new(
                &Snapshot::tag_of(generation, at),
                view,
                nodes,
                encoding,
                (at, &HeaderValue::from_static("")),
                Duration::ZERO,
            )
            .etag
        };
        let a = [NodeName::parse("a").expect("name")];

        let base = tag(3, "metrics", None, Encoding::Identity);
        assert_eq!(base, "W/\"3.1a2b-metrics\"");
        assert_ne!(base, tag(4, "metrics", None, Encoding::Identity));
        assert_ne!(base, tag(3, "nodes", None, Encoding::Identity));
        assert_ne!(base, tag(3, "metrics", Some(&a), Encoding::Identity));
        assert_ne!(base, tag(3, "metrics", None, Encoding::Gzip));
        let date = HeaderValue::from_static("");
        let a_millisecond_later = (at + Duration::from_millis(1), &date);
        let elsewhere = Validators::new(
            &Snapshot::tag_of(3, a_millisecond_later.0),
            "metrics",
            None,
            Encoding::Identity,
            a_millisecond_later,
            Duration::ZERO,
        );
        assert_ne!(base, elsewhere.etag, "another process's generation 3");
    }

    #[test]
    fn if_none_match_compares_weakly_and_wins_over_if_modified_since() {
        let date = HeaderValue::from_static("");
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(0xff);
        let v = Validators::new(
            &Snapshot::tag_of(3, at),
            "metrics",
            None,
            Encoding::Identity,
            (at, &date),
            Duration::ZERO,
        );
        let mut request = HeaderMap::new();

        request.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"2.ff-metrics\", \"3.ff-metrics\""),
        );
        assert!(v.not_modified(&request));
        request.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("W/\"2.ff-metrics\""),
        );
        request.insert(
            header::IF_MODIFIED_SINCE,
            HeaderValue::from_static("Fri, 01 Jan 2100 00:00:00 GMT"),
        );
        assert!(!v.not_modified(&request));
    }

    #[test]
    fn if_modified_since_compares_whole_seconds() {
        let date = HeaderValue::from_static("");
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_292_000_900);
        let v = Validators::new(
            &Snapshot::tag_of(3, at),
            "metrics",
            None,
            Encoding::Identity,
            (at, &date),
            Duration::ZERO,
        );
        let since = |date: &'static str| {
            let mut request = HeaderMap::new();
            request.insert(header::IF_MODIFIED_SINCE, HeaderValue::from_static(date));
            v.not_modified(&request)
        };

        assert!(since("Thu, 03 Dec 2026 10:00:00 GMT"));
        assert!(!since("Thu, 03 Dec 2026 09:59:59 GMT"));
    }
}
