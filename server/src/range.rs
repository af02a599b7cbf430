//! The `Range` request header, single range only (RFC 9110 14.2). Several
//! ranges (any `,`) are answered with the whole object, which the RFC
//! allows, whatever the ranges are. Positions are digits only; a position
//! past what a u64 holds counts as "past the end" (a last-byte-pos past the
//! end means the end, so `bytes=5-18446744073709551615` is the tail from 5).

/// What to send for a `Range` header against an object of `len` bytes.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum RangeAnswer {
    /// No usable range: send everything with 200.
    Whole,
    /// Send `[start, end)` with 206; `start < end <= len`.
    Part { start: u64, end: u64 },
    /// 416 with `Content-Range: bytes */len`.
    Unsatisfiable,
}

/// A byte position: 1*DIGIT (no sign, no space), in u128 so that two
/// positions past u64 still compare right; saturates past u128.
fn position(s: &str) -> Option<u128> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.bytes().fold(0u128, |n, d| n.saturating_mul(10).saturating_add(u128::from(d - b'0'))))
}

pub fn answer(header: Option<&str>, len: u64) -> RangeAnswer {
    let Some(h) = header else { return RangeAnswer::Whole };
    let h = h.trim();
    // The range unit is case-insensitive.
    let Some(spec) = h.get(..6).filter(|u| u.eq_ignore_ascii_case("bytes=")).map(|_| &h[6..]) else {
        return RangeAnswer::Whole;
    };
    if spec.contains(',') {
        return RangeAnswer::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else { return RangeAnswer::Whole };
    let (a, b) = (a.trim(), b.trim());
    let len_wide = u128::from(len);
    if a.is_empty() {
        // Suffix: the last n bytes.
        let Some(n) = position(b) else { return RangeAnswer::Whole };
        if n == 0 || len == 0 {
            return RangeAnswer::Unsatisfiable;
        }
        return RangeAnswer::Part { start: (len_wide - n.min(len_wide)) as u64, end: len };
    }
    let Some(start) = position(a) else { return RangeAnswer::Whole };
    let end = if b.is_empty() {
        len_wide
    } else {
        match position(b) {
            Some(last) if last >= start => last.saturating_add(1).min(len_wide),
            _ => return RangeAnswer::Whole,
        }
    };
    if start >= len_wide {
        return RangeAnswer::Unsatisfiable;
    }
    // Both are now at most len, which is a u64.
    let (start, end) = (start as u64, end as u64);
    let answer = RangeAnswer::Part { start, end };
    debug_assert!(start < end && end <= len, "{answer:?} of {len}");
    answer
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
        assert_eq!(answer(Some("bytes=+1-2"), 10), Whole);
        assert_eq!(answer(Some("Bytes=1-2"), 10), Part { start: 1, end: 3 });
    }

    #[test]
    fn a_last_position_past_u64_means_the_end() {
        assert_eq!(answer(Some("bytes=5-18446744073709551615"), 29), Part { start: 5, end: 29 });
        assert_eq!(answer(Some("bytes=0-18446744073709551615"), 29), Part { start: 0, end: 29 });
        assert_eq!(answer(Some("bytes=0-99999999999999999999999"), 29), Part { start: 0, end: 29 });
        assert_eq!(answer(Some("bytes=99999999999999999999999-"), 29), Unsatisfiable);
        assert_eq!(answer(Some("bytes=-99999999999999999999999"), 29), Part { start: 0, end: 29 });
        // Found by the property test: both positions past u64 must still
        // compare (last < first is an invalid range, so the whole object).
        assert_eq!(answer(Some("bytes=20000000000000000000-18446744073709551615"), 0), Whole);
    }

    /// RFC 9110's single-range rules, in u128 so nothing overflows.
    fn oracle(header: &str, len: u64) -> RangeAnswer {
        let h = header.trim();
        if h.len() < 6 || !h.is_char_boundary(6) || !h[..6].eq_ignore_ascii_case("bytes=") {
            return Whole;
        }
        let spec = &h[6..];
        if spec.contains(',') {
            return Whole;
        }
        let Some((a, b)) = spec.trim().split_once('-') else { return Whole };
        let num = |s: &str| -> Option<u128> {
            let s = s.trim();
            if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            Some(s.bytes().fold(0u128, |n, d| n.saturating_mul(10).saturating_add(u128::from(d - b'0'))))
        };
        let len = u128::from(len);
        let part = |s: u128, e: u128| Part { start: s as u64, end: e as u64 };
        if a.trim().is_empty() {
            let Some(n) = num(b) else { return Whole };
            if n == 0 || len == 0 {
                return Unsatisfiable;
            }
            return part(len - n.min(len), len);
        }
        let Some(first) = num(a) else { return Whole };
        let end = if b.trim().is_empty() {
            len
        } else {
            match num(b) {
                Some(last) if last >= first => (last + 1).min(len),
                _ => return Whole,
            }
        };
        if first >= len {
            return Unsatisfiable;
        }
        part(first, end)
    }

    fn lengths() -> impl proptest::strategy::Strategy<Value = u64> {
        use proptest::prelude::*;
        prop_oneof![Just(0u64), Just(1), Just(29), Just(50_000_000), Just(u64::MAX - 1), Just(u64::MAX), any::<u64>()]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4000))]

        #[test]
        fn hostile_ranges_match_the_oracle(
            header in "(bytes|BYTES|byte|items)=[ ]?([0-9]{0,24}|[+x-]|18446744073709551615)-([0-9]{0,24}|18446744073709551615|[+ ]1)(,[0-9]{0,3}-[0-9]{0,3})?",
            len in lengths(),
        ) {
            let got = answer(Some(&header), len);
            proptest::prop_assert_eq!(got, oracle(&header, len), "{:?} of {}", header, len);
            if let Part { start, end } = got {
                proptest::prop_assert!(start < end && end <= len);
            }
        }

        #[test]
        fn any_string_is_answered_without_a_panic(header in "\\PC{0,40}", len in lengths()) {
            proptest::prop_assert_eq!(answer(Some(&header), len), oracle(&header, len));
        }
    }
}
