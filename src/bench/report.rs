//! Small statistics and the table the programs print.
use std::time::Duration;

/// The `q` quantile (0..=1) of `values` by nearest rank; `None` when empty.
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = (q.clamp(0.0, 1.0) * v.len() as f64).ceil() as usize;
    Some(v[rank.saturating_sub(1).min(v.len() - 1)])
}

pub fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// Verdict of one row against its target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// No target: a figure only.
    Info,
    Met,
    /// A target is missed (reported, not fatal).
    Missed,
    /// A hard rule is broken: the program exits non-zero.
    Violated,
}

impl Verdict {
    pub fn of(ok: bool) -> Self {
        if ok { Verdict::Met } else { Verdict::Missed }
    }
    pub fn hard(ok: bool) -> Self {
        if ok { Verdict::Met } else { Verdict::Violated }
    }
    fn label(self) -> &'static str {
        match self {
            Verdict::Info => "",
            Verdict::Met => "ok",
            Verdict::Missed => "MISSED",
            Verdict::Violated => "VIOLATION",
        }
    }
}

struct Row {
    section: Option<String>,
    name: String,
    value: String,
    target: String,
    verdict: Verdict,
}

/// Rows grouped in sections, printed as an aligned table.
#[derive(Default)]
pub struct Table {
    rows: Vec<Row>,
}

impl Table {
    pub fn section(&mut self, title: &str) {
        self.rows.push(Row {
            section: Some(title.to_string()),
            name: String::new(),
            value: String::new(),
            target: String::new(),
            verdict: Verdict::Info,
        });
    }

    pub fn info(&mut self, name: &str, value: impl Into<String>) {
        self.row(name, value, "", Verdict::Info);
    }

    pub fn row(&mut self, name: &str, value: impl Into<String>, target: &str, verdict: Verdict) {
        self.rows.push(Row {
            section: None,
            name: name.to_string(),
            value: value.into(),
            target: target.to_string(),
            verdict,
        });
    }

    /// A hard rule that a count is zero (an invariant).
    pub fn none(&mut self, name: &str, count: impl TryInto<u64>) {
        let count = count.try_into().unwrap_or(u64::MAX);
        self.row(name, count.to_string(), "= 0", Verdict::hard(count == 0));
    }

    pub fn violations(&self) -> usize {
        self.rows
            .iter()
            .filter(|r| r.verdict == Verdict::Violated)
            .count()
    }

    pub fn missed(&self) -> usize {
        self.rows
            .iter()
            .filter(|r| r.verdict == Verdict::Missed)
            .count()
    }

    pub fn render(&self) -> String {
        let w_name = self
            .rows
            .iter()
            .map(|r| r.name.chars().count())
            .max()
            .unwrap_or(0);
        // Long values (lists of counters) overflow their own row instead of widening all.
        let w_value = self
            .rows
            .iter()
            .map(|r| r.value.chars().count())
            .filter(|w| *w <= 28)
            .max()
            .unwrap_or(0);
        let w_target = self
            .rows
            .iter()
            .map(|r| r.target.chars().count())
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        for r in &self.rows {
            if let Some(title) = &r.section {
                out.push_str(&format!("\n{title}\n"));
                continue;
            }
            let line = format!(
                "  {:<w_name$}  {:>w_value$}  {:<w_target$}  {}",
                r.name,
                r.value,
                r.target,
                r.verdict.label(),
            );
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), Some(50.0));
        assert_eq!(quantile(&v, 0.99), Some(99.0));
        assert_eq!(quantile(&v, 1.0), Some(100.0));
        assert_eq!(quantile(&[7.0], 0.99), Some(7.0));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn table_counts_verdicts_and_aligns() {
        let mut t = Table::default();
        t.section("phase");
        t.row("duplicates", "0", "= 0", Verdict::hard(true));
        t.row("lists", "9", "<= 5", Verdict::hard(false));
        t.row("p99", "300 ms", "< 250 ms", Verdict::of(false));
        t.info("objects", "10");
        assert_eq!(t.violations(), 1);
        assert_eq!(t.missed(), 1);
        let text = t.render();
        assert!(
            text.contains("VIOLATION") && text.contains("MISSED"),
            "{text}"
        );
    }
}
