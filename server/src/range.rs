//! The `Range` request header, single range only (RFC 9110 14.2). Several
//! ranges are answered with the whole object, which the RFC allows.

/// What to send for a `Range` header against an object of `len` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeAnswer {
    /// No usable range: send everything with 200.
    Whole,
    /// Send `[start, end)` with 206.
    Part { start: u64, end: u64 },
    /// 416 with `Content-Range: bytes */len`.
    Unsatisfiable,
}

pub fn answer(header: Option<&str>, len: u64) -> RangeAnswer {
    let Some(h) = header else { return RangeAnswer::Whole };
    let Some(spec) = h.trim().strip_prefix("bytes=") else { return RangeAnswer::Whole };
    if spec.contains(',') {
        return RangeAnswer::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else { return RangeAnswer::Whole };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        // Suffix: the last n bytes.
        let Ok(n) = b.parse::<u64>() else { return RangeAnswer::Whole };
        if n == 0 || len == 0 {
            return RangeAnswer::Unsatisfiable;
        }
        return RangeAnswer::Part { start: len - n.min(len), end: len };
    }
    let Ok(start) = a.parse::<u64>() else { return RangeAnswer::Whole };
    let end = if b.is_empty() {
        len
    } else {
        match b.parse::<u64>() {
            Ok(last) if last >= start => (last + 1).min(len),
            _ => return RangeAnswer::Whole,
        }
    };
    if start >= len {
        return RangeAnswer::Unsatisfiable;
    }
    RangeAnswer::Part { start, end }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RangeAnswer::*;

    #[test]
    fn answers_every_shape() {
        assert_eq!(answer(None, 10), Whole);
        assert_eq!(answer(Some("bytes=0-4"), 10), Part { start: 0, end: 5 });
        assert_eq!(answer(Some("bytes=5-"), 10), Part { start: 5, end: 10 });
        assert_eq!(answer(Some("bytes=-3"), 10), Part { start: 7, end: 10 });
        assert_eq!(answer(Some("bytes=-30"), 10), Part { start: 0, end: 10 });
        assert_eq!(answer(Some("bytes=8-100"), 10), Part { start: 8, end: 10 });
        assert_eq!(answer(Some("bytes=10-"), 10), Unsatisfiable);
        assert_eq!(answer(Some("bytes=-0"), 10), Unsatisfiable);
        assert_eq!(answer(Some("bytes=0-1,3-4"), 10), Whole);
        assert_eq!(answer(Some("bytes=5-2"), 10), Whole);
        assert_eq!(answer(Some("items=0-1"), 10), Whole);
        assert_eq!(answer(Some("bytes=x-1"), 10), Whole);
    }
}
