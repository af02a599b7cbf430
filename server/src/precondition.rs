//! `If-Match`, `If-None-Match` and `If-Range` (RFC 9110 13.1), parsed
//! strictly: a header that is present but cannot be parsed (bytes that are
//! not visible ASCII, an entity-tag without its quotes) is a 400, never
//! taken as absent, because taking it as absent turns a conditional write
//! into an unconditional one and loses updates.
//!
//! If-Match compares strongly (a weak tag never matches); If-None-Match
//! weakly. If-Range holds only for the same strong ETag: anything else (a
//! weak tag, another tag, a date, since objects carry no Last-Modified)
//! means the Range is ignored and the whole object is sent.

use crate::error::ApiError;
use http::{HeaderMap, HeaderValue};

/// An If-Match / If-None-Match value.
#[derive(Debug, PartialEq, Eq)]
pub enum EtagList {
    Any,
    /// (weak, the quoted opaque tag).
    Tags(Vec<(bool, String)>),
}

impl EtagList {
    /// Strong comparison (If-Match): `*`, or the same tag, not weak.
    pub fn matches_strong(&self, etag: &str) -> bool {
        match self {
            EtagList::Any => true,
            EtagList::Tags(tags) => tags.iter().any(|(weak, t)| !weak && t == etag),
        }
    }

    /// Weak comparison (If-None-Match): `*`, or the same opaque tag.
    pub fn matches_weak(&self, etag: &str) -> bool {
        match self {
            EtagList::Any => true,
            EtagList::Tags(tags) => tags.iter().any(|(_, t)| t == etag),
        }
    }
}

fn invalid(name: &str, why: &str) -> ApiError {
    ApiError::bad_request("invalid_header", format!("{name}: {why}; send * or a list of quoted ETags like \"abc\""))
}

fn visible_ascii<'a>(name: &str, v: &'a HeaderValue) -> Result<&'a str, ApiError> {
    v.to_str()
        .ok()
        .filter(|s| s.bytes().all(|b| b == b' ' || b == b'\t' || b.is_ascii_graphic()))
        .ok_or_else(|| invalid(name, "it holds bytes that are not visible ASCII"))
}

/// One entity-tag, `"..."` or `W/"..."`: (weak, the quoted tag).
fn entity_tag(s: &str) -> Option<(bool, String)> {
    let (weak, tag) = match s.strip_prefix("W/") {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let inner = tag.strip_prefix('"')?.strip_suffix('"')?;
    // etagc: %x21 / %x23-7E (no DQUOTE, no space)
    inner.bytes().all(|b| b == 0x21 || (0x23..=0x7e).contains(&b)).then(|| (weak, tag.to_owned()))
}

/// Parses the list in header `name`; None when it is absent.
pub fn etag_list(h: &HeaderMap, name: http::header::HeaderName) -> Result<Option<EtagList>, ApiError> {
    let Some(v) = h.get(&name) else { return Ok(None) };
    let s = visible_ascii(name.as_str(), v)?.trim();
    if s == "*" {
        return Ok(Some(EtagList::Any));
    }
    let mut tags = Vec::new();
    // Lists may hold empty elements (RFC 9110 5.6.1).
    for element in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        tags.push(entity_tag(element).ok_or_else(|| invalid(name.as_str(), "an entity-tag is not quoted"))?);
    }
    if tags.is_empty() {
        return Err(invalid(name.as_str(), "it is empty"));
    }
    Ok(Some(EtagList::Tags(tags)))
}

/// Whether a Range may be honoured under `If-Range`: true when there is
/// no If-Range, or it is `etag` itself (strong).
pub fn if_range_holds(h: &HeaderMap, etag: &str) -> Result<bool, ApiError> {
    let Some(v) = h.get(http::header::IF_RANGE) else { return Ok(true) };
    let s = visible_ascii("If-Range", v)?.trim();
    Ok(matches!(entity_tag(s), Some((false, t)) if t == etag))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{IF_MATCH, IF_NONE_MATCH, IF_RANGE};

    fn map(name: http::header::HeaderName, v: &[u8]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_bytes(v).expect("header bytes"));
        h
    }

    #[test]
    fn lists_parse_strictly() {
        let e = "\"abc\"";
        assert_eq!(etag_list(&HeaderMap::new(), IF_MATCH).expect("absent"), None);
        assert_eq!(etag_list(&map(IF_MATCH, b"*"), IF_MATCH).expect("any"), Some(EtagList::Any));
        let l = etag_list(&map(IF_MATCH, b"\"x\", , W/\"abc\""), IF_MATCH).expect("list").expect("present");
        assert!(!l.matches_strong(e), "a weak tag never matches strongly");
        assert!(l.matches_weak(e));
        let l = etag_list(&map(IF_NONE_MATCH, b"\"abc\""), IF_NONE_MATCH).expect("list").expect("present");
        assert!(l.matches_strong(e) && l.matches_weak(e));
        for bad in [&b"\"\xe9\""[..], b"abc", b"\"a", b"", b"\"a b\"", b"W/abc", b"\"a\"\"b\""] {
            let got = etag_list(&map(IF_MATCH, bad), IF_MATCH);
            assert_eq!(got.err().map(|e| e.status.as_u16()), Some(400), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn if_range_holds_only_for_the_same_strong_tag() {
        let e = "\"abc\"";
        assert!(if_range_holds(&HeaderMap::new(), e).expect("absent"));
        assert!(if_range_holds(&map(IF_RANGE, b"\"abc\""), e).expect("same"));
        assert!(!if_range_holds(&map(IF_RANGE, b"\"nope\""), e).expect("other"));
        assert!(!if_range_holds(&map(IF_RANGE, b"W/\"abc\""), e).expect("weak"));
        assert!(!if_range_holds(&map(IF_RANGE, b"Wed, 21 Oct 2015 07:28:00 GMT"), e).expect("date"));
        assert!(if_range_holds(&map(IF_RANGE, b"\"\xe9\""), e).is_err());
    }
}
