//! The `Time-To-Live` request header: a duration in trove's one grammar
//! (engine units.rs: `3600`, `90s`, `15m`, `1h`, `7d`), whole seconds,
//! from 1 second to TTL_MAX_SECS.

use trove_engine::limits::TTL_MAX_SECS;

pub fn parse_secs(v: &str) -> Result<u64, String> {
    let d = trove_engine::units::parse_duration(v).map_err(|e| format!("Time-To-Live: {e}"))?;
    let whole = d.subsec_nanos() == 0;
    let secs = Some(d.as_secs()).filter(|s| whole && *s > 0 && *s <= TTL_MAX_SECS);
    secs.ok_or_else(|| format!("Time-To-Live {:?} must be whole seconds from 1 to {TTL_MAX_SECS}", v.trim()))
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
