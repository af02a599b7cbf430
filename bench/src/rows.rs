//! A bench's result table: one row per measurement, each naming the
//! settings it ran with, its baseline from the same run, the ratio, the
//! target and whether it was met. A row with no target says so ("-"),
//! never "met".

/// Whether a row met its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Met {
    Yes,
    No,
    /// Measured, no target to meet.
    NoTarget,
}

impl Met {
    pub fn of(ok: bool) -> Met {
        if ok {
            Met::Yes
        } else {
            Met::No
        }
    }

    fn cell(self) -> &'static str {
        match self {
            Met::Yes => "met",
            Met::No => "**missed**",
            Met::NoTarget => "-",
        }
    }
}

/// One measurement.
pub struct Row {
    pub what: String,
    pub settings: String,
    pub trove: String,
    pub baseline: String,
    pub ratio: String,
    pub target: String,
    pub met: Met,
}

impl Row {
    /// A row whose target is trove's figure `a` within `limit` times the
    /// baseline's `b`.
    pub fn within(what: String, settings: String, trove: String, baseline: String, a: f64, b: f64, limit: f64) -> Row {
        Row {
            what,
            settings,
            trove,
            baseline,
            ratio: ratio(a, b),
            target: format!("<= {limit}x"),
            met: Met::of(a <= limit * b),
        }
    }
}

/// Rows in the order they were measured.
#[derive(Default)]
pub struct Table {
    pub rows: Vec<Row>,
}

impl Table {
    pub fn add(&mut self, row: Row) {
        eprintln!(
            "{}: {} (baseline {}; {}; target {}: {})",
            row.what,
            row.trove,
            row.baseline,
            row.ratio,
            row.target,
            row.met.cell()
        );
        self.rows.push(row);
    }

    /// The table in markdown.
    pub fn markdown(&self) -> String {
        let mut md = String::from(
            "| What | Settings | trove | Baseline (same run) | Ratio | Target | Met |\n|---|---|---|---|---|---|---|\n",
        );
        for r in &self.rows {
            md.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} |\n",
                r.what,
                r.settings,
                r.trove,
                r.baseline,
                r.ratio,
                r.target,
                r.met.cell()
            ));
        }
        md
    }

    /// The table as JSON rows.
    pub fn json(&self) -> serde_json::Value {
        self.rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "what": r.what, "settings": r.settings, "trove": r.trove, "baseline": r.baseline,
                    "ratio": r.ratio, "target": r.target,
                    "met": match r.met { Met::Yes => Some(true), Met::No => Some(false), Met::NoTarget => None },
                })
            })
            .collect()
    }
}

/// "1.23x", the mount's figure over the baseline's.
pub fn ratio(trove: f64, baseline: f64) -> String {
    format!("{:.2}x", trove / baseline.max(f64::MIN_POSITIVE))
}
