//! Reports of a bench run: JSON (everything), a markdown table, and an SVG
//! plot of latency by percentile, written side by side under one directory.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::fmt::Write;
use std::path::Path;

pub const PERCENTILES: [f64; 6] = [50.0, 90.0, 99.0, 99.9, 99.99, 100.0];

/// Latency summary of one series, in microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p99_9_us: u64,
    pub p99_99_us: u64,
    pub max_us: u64,
    pub samples: u64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Latency {
        Latency {
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            p99_9_us: h.value_at_quantile(0.999),
            p99_99_us: h.value_at_quantile(0.9999),
            max_us: h.max(),
            samples: h.len(),
        }
    }
}

/// One figure over a run's rounds: the median round and the spread, so
/// one noisy round cannot carry a claim. Empty when nothing was measured.
#[derive(Debug, Clone, Serialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub rounds: usize,
}

impl Spread {
    pub fn of(rounds: &[f64]) -> Option<Spread> {
        let mut v: Vec<f64> = rounds.iter().copied().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        Some(Spread { median: *v.get(v.len() / 2)?, min: v[0], max: v[v.len() - 1], rounds: v.len() })
    }

    /// The ratio `a / b` round by round (rounds pair up by index: both
    /// sides of a round ran back to back).
    pub fn ratio(a: &[f64], b: &[f64]) -> Option<Spread> {
        Spread::of(&a.iter().zip(b).map(|(a, b)| a / b).collect::<Vec<_>>())
    }

    /// "median (min-max)" of a JSON Spread, each figure through `fmt`.
    pub fn show(v: &serde_json::Value, fmt: impl Fn(f64) -> String) -> String {
        match (v["median"].as_f64(), v["min"].as_f64(), v["max"].as_f64()) {
            (Some(m), Some(lo), Some(hi)) => format!("{} ({}-{})", fmt(m), fmt(lo), fmt(hi)),
            _ => "not measured".into(),
        }
    }
}

/// A curve for the plot: (percentile, latency in us).
pub fn curve(h: &Histogram<u64>) -> Vec<(f64, u64)> {
    let mut pts = Vec::new();
    let mut p = 0.0f64;
    while p < 99.999 {
        pts.push((p, h.value_at_percentile(p)));
        // Dense near the tail: step a tenth of the distance to 100.
        p += ((100.0 - p) / 10.0).max(0.0005);
    }
    pts.push((100.0, h.max()));
    pts
}

/// An SVG line plot, x = percentile on the usual "nines" log scale,
/// y = latency on a log scale.
pub fn svg(title: &str, series: &[(&str, Vec<(f64, u64)>)]) -> String {
    let (w, h, left, bottom, top, right) = (900.0, 500.0, 80.0, 60.0, 40.0, 160.0);
    let x_of = |p: f64| {
        let nines = -(1.0 - (p / 100.0).min(0.999_999)).log10(); // 0 .. 6
        left + (w - left - right) * (nines / 6.0)
    };
    let max_us = series.iter().flat_map(|(_, c)| c.iter().map(|(_, v)| *v)).max().unwrap_or(1).max(10) as f64;
    let min_us =
        series.iter().flat_map(|(_, c)| c.iter().map(|(_, v)| *v)).filter(|v| *v > 0).min().unwrap_or(1) as f64;
    let (lo, hi) = ((min_us / 2.0).max(1.0).log10().floor(), max_us.log10().ceil());
    let y_of = |us: f64| top + (h - top - bottom) * (1.0 - (us.max(1.0).log10() - lo) / (hi - lo).max(1.0));
    let colors = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd"];
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/>"#
    );
    let _ = write!(s, r#"<text x="{}" y="22" font-size="15" text-anchor="middle">{title}</text>"#, w / 2.0);
    for (i, label) in ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%", "99.9999%"].iter().enumerate() {
        let x = left + (w - left - right) * (i as f64 / 6.0);
        let _ = write!(
            s,
            r##"<line x1="{x}" y1="{top}" x2="{x}" y2="{}" stroke="#ddd"/><text x="{x}" y="{}" text-anchor="middle">{label}</text>"##,
            h - bottom,
            h - bottom + 18.0
        );
    }
    let mut e = lo;
    while e <= hi {
        let us = 10f64.powf(e);
        let y = y_of(us);
        let label = if us >= 1000.0 { format!("{} ms", us / 1000.0) } else { format!("{us} us") };
        let _ = write!(
            s,
            r##"<line x1="{left}" y1="{y}" x2="{}" y2="{y}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end">{label}</text>"##,
            w - right,
            left - 6.0,
            y + 4.0
        );
        e += 1.0;
    }
    let _ =
        write!(s, r#"<text x="{}" y="{}" text-anchor="middle">percentile</text>"#, (left + w - right) / 2.0, h - 15.0);
    for (i, (name, pts)) in series.iter().enumerate() {
        let c = colors[i % colors.len()];
        let path: Vec<String> = pts.iter().map(|(p, v)| format!("{:.1},{:.1}", x_of(*p), y_of(*v as f64))).collect();
        let _ = write!(s, r#"<polyline fill="none" stroke="{c}" stroke-width="2" points="{}"/>"#, path.join(" "));
        let ly = top + 20.0 * i as f64 + 10.0;
        let _ = write!(
            s,
            r#"<line x1="{}" y1="{ly}" x2="{}" y2="{ly}" stroke="{c}" stroke-width="3"/><text x="{}" y="{}">{name}</text>"#,
            w - right + 10.0,
            w - right + 30.0,
            w - right + 35.0,
            ly + 4.0
        );
    }
    s.push_str("</svg>\n");
    s
}

pub fn write_all(dir: &Path, json: &serde_json::Value, markdown: &str, svg: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("results.json"), serde_json::to_string_pretty(json)?)?;
    std::fs::write(dir.join("results.md"), markdown)?;
    std::fs::write(dir.join("latency.svg"), svg)?;
    Ok(())
}
