//! Output: aligned tables for people (the default), JSON or YAML for scripts. Progress and
//! prompts go to stderr, so stdout stays clean for `-o json | jq`.
use serde::Serialize;

use super::CliError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Yaml,
}

/// Prints `value` as JSON/YAML, or runs `table` for the human form.
pub fn emit<T: Serialize>(
    format: Format,
    value: &T,
    table: impl FnOnce() -> String,
) -> Result<(), CliError> {
    let text = match format {
        Format::Table => table(),
        Format::Json => serde_json::to_string_pretty(value)
            .map(|s| s + "\n")
            .map_err(|e| CliError::Failed(format!("encoding JSON: {e}")))?,
        Format::Yaml => serde_yaml::to_string(value)
            .map_err(|e| CliError::Failed(format!("encoding YAML: {e}")))?,
    };
    print!("{text}");
    Ok(())
}

/// A kubectl-style table: upper-case headers, columns three spaces apart.
#[derive(Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Self {
        Self {
            rows: vec![headers.iter().map(|h| h.to_uppercase()).collect()],
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                if c + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    line.push_str(&" ".repeat(widths[c] - cell.chars().count() + 3));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `-` for a missing value, as kubectl prints `<none>` compactly.
pub fn or_dash(v: Option<impl ToString>) -> String {
    v.map(|v| v.to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "-".into())
}

/// A timestamp as an age (`5m`, `3h`, `2d`) relative to now, kubectl-style.
pub fn age(rfc3339: Option<&str>, now: jiff::Timestamp) -> String {
    let Some(t) = rfc3339.and_then(|t| t.parse::<jiff::Timestamp>().ok()) else {
        return "-".into();
    };
    let secs = now.duration_since(t).as_secs().max(0);
    match secs {
        0..120 => format!("{secs}s"),
        120..7200 => format!("{}m", secs / 60),
        7200..172_800 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_like_kubectl() {
        let mut t = Table::new(&["name", "phase"]);
        t.row(vec!["a-long-name".into(), "Ready".into()]);
        t.row(vec!["b".into(), "".into()]);
        assert_eq!(t.render(), "NAME          PHASE\na-long-name   Ready\nb\n");
    }

    #[test]
    fn ages() {
        let now: jiff::Timestamp = "2026-11-23T12:00:00Z".parse().unwrap();
        assert_eq!(age(Some("2026-11-23T11:59:30Z"), now), "30s");
        assert_eq!(age(Some("2026-11-23T11:00:00Z"), now), "60m");
        assert_eq!(age(Some("2026-11-23T00:00:00Z"), now), "12h");
        assert_eq!(age(Some("2026-11-20T12:00:00Z"), now), "3d");
        assert_eq!(age(None, now), "-");
        assert_eq!(or_dash(Some("")), "-");
    }
}
