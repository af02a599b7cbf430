//! The one grammar of sizes (`64GiB`, `512M`, `4096`: binary units) and
//! durations (`500ms`, `90s`, `2m`, `1h`, `7d`; a bare number is seconds)
//! that trove reads: flags, TOML, `TROVE_*` variables and the
//! `Time-To-Live` header. It never reads anything but the one string.

use std::time::Duration;

pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a size like 4096, 512M or 64GiB"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        other => return Err(format!("{s:?}: unknown size unit {other:?} (use K, M, G or T)")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("{s:?} is too large"))
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a duration like 500ms, 90s, 2m, 1h or 7d"))?;
    let (per, millis) = match unit.trim() {
        "ms" => (1, true),
        "" | "s" => (1, false),
        "m" => (60, false),
        "h" => (3600, false),
        "d" => (86_400, false),
        other => return Err(format!("{s:?}: unknown duration unit {other:?} (use ms, s, m, h or d)")),
    };
    let n = n.checked_mul(per).ok_or_else(|| format!("{s:?} is too long"))?;
    Ok(if millis { Duration::from_millis(n) } else { Duration::from_secs(n) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("64GiB"), Ok(64 << 30));
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("").is_err());
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        for bad in ["soon", "", "-5s", "1.5h", "99999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
    }
}
