//! The `Time-To-Live` request header: seconds (`3600`) or a number with
//! one unit (`90s`, `15m`, `1h`, `7d`).

use trove_engine::limits::TTL_MAX_SECS;

pub fn parse_secs(v: &str) -> Result<u64, String> {
    let v = v.trim();
    let (num, mult) = match v.char_indices().last() {
        Some((i, 's')) => (&v[..i], 1),
        Some((i, 'm')) => (&v[..i], 60),
        Some((i, 'h')) => (&v[..i], 3600),
        Some((i, 'd')) => (&v[..i], 86_400),
        _ => (v, 1),
    };
    let n: u64 =
        num.parse().map_err(|_| format!("Time-To-Live {v:?} is not a number of seconds or like 90s, 15m, 1h, 7d"))?;
    let secs = n.checked_mul(mult).filter(|s| *s > 0 && *s <= TTL_MAX_SECS);
    secs.ok_or_else(|| format!("Time-To-Live {v:?} must be between 1 second and {TTL_MAX_SECS} seconds"))
}

#[cfg(test)]
mod tests {
    use super::parse_secs;

    #[test]
    fn parses_units_and_refuses_junk() {
        assert_eq!(parse_secs("3600"), Ok(3600));
        assert_eq!(parse_secs("90s"), Ok(90));
        assert_eq!(parse_secs("15m"), Ok(900));
        assert_eq!(parse_secs("1h"), Ok(3600));
        assert_eq!(parse_secs("2d"), Ok(172_800));
        for bad in ["", "h", "1x", "-5", "0", "1.5h", "99999999999d"] {
            assert!(parse_secs(bad).is_err(), "{bad:?} accepted");
        }
    }
}
