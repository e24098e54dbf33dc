//! The apiserver's own account of a window: how long it took to answer the writes to one
//! resource and how many bytes they carried, read from its `/metrics` before and after. It
//! tells a slow apiserver apart from an operator whose work waits in its own queue: the
//! latency phase prints both beside the operator's figure, and every phase prints what the
//! operator wrote beside the objects themselves (its `VpsOccupancy` shards).
use std::collections::BTreeMap;
use std::time::Instant;

use kube::Client;

use super::Result;

/// Cumulative bucket counts by upper bound (seconds; the last is `+Inf`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram(BTreeMap<u64, u64>);

impl Histogram {
    /// Upper bounds are kept as whole microseconds, so `BTreeMap` orders them exactly.
    fn add(&mut self, le: &str, count: u64) {
        let bound = if le == "+Inf" {
            u64::MAX
        } else {
            match le.parse::<f64>() {
                Ok(s) => (s * 1e6).round() as u64,
                Err(_) => return,
            }
        };
        *self.0.entry(bound).or_default() += count;
    }

    fn since(&self, before: &Histogram) -> Histogram {
        Histogram(
            self.0
                .iter()
                .map(|(le, n)| (*le, n.saturating_sub(*before.0.get(le).unwrap_or(&0))))
                .collect(),
        )
    }

    pub fn count(&self) -> u64 {
        self.0.get(&u64::MAX).copied().unwrap_or(0)
    }

    /// The upper bound of the bucket holding the `q` quantile, in milliseconds: what a
    /// Prometheus histogram can say without guessing inside a bucket. `None` when empty or
    /// when the quantile lies in the `+Inf` bucket.
    pub fn quantile_bound_ms(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * total as f64).ceil() as u64;
        self.0
            .iter()
            .find(|(_, n)| **n >= rank.max(1))
            .and_then(|(le, _)| (*le != u64::MAX).then(|| *le as f64 / 1000.0))
    }
}

/// One reading of the figures this module follows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Reading {
    /// `apiserver_request_duration_seconds` of writes (every verb but reads and watches) to
    /// the resource, subresources included.
    pub writes: Histogram,
    /// `apiserver_request_body_size_bytes_sum` of those writes: the bytes they sent.
    pub body_bytes: u64,
}

impl Reading {
    pub fn since(&self, before: &Reading) -> Reading {
        Reading {
            writes: self.writes.since(&before.writes),
            body_bytes: self.body_bytes.saturating_sub(before.body_bytes),
        }
    }
}

/// Verbs that read, as the duration metric spells them; the body-size metric spells them in
/// lower case.
const READS: [&str; 4] = ["GET", "LIST", "WATCH", "WATCHLIST"];

fn is_write(verb: &str) -> bool {
    !READS.iter().any(|r| r.eq_ignore_ascii_case(verb))
}

/// Reads the apiserver's `/metrics` (needs `get` on the `/metrics` non-resource URL).
pub async fn read(client: &Client, resource: &str) -> Result<Reading> {
    let request = http::Request::get("/metrics").body(Vec::new())?;
    Ok(parse(&client.request_text(request).await?, resource))
}

/// The figures of one `/metrics` text.
pub fn parse(text: &str, resource: &str) -> Reading {
    let mut reading = Reading::default();
    for line in text.lines() {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Some((name, labels)) = series.split_once('{') else {
            continue;
        };
        let Ok(count) = value.parse::<f64>() else {
            continue;
        };
        let labels = labels.trim_end_matches('}');
        let label = |key: &str| {
            labels.split(',').find_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                (k == key).then(|| v.trim_matches('"'))
            })
        };
        if label("resource") != Some(resource) || !label("verb").is_some_and(is_write) {
            continue;
        }
        match (name, label("le")) {
            ("apiserver_request_duration_seconds_bucket", Some(le)) => {
                reading.writes.add(le, count as u64)
            }
            ("apiserver_request_body_size_bytes_sum", None) => reading.body_bytes += count as u64,
            _ => {}
        }
    }
    reading
}

/// A window opened with one reading and closed with another.
pub struct Window {
    resource: &'static str,
    before: Reading,
    opened: Instant,
}

/// What the apiserver did between the two readings.
pub struct Closed {
    pub reading: Reading,
    pub secs: f64,
}

impl Window {
    pub async fn open(client: &Client, resource: &'static str) -> Result<Window> {
        Ok(Window {
            resource,
            before: read(client, resource).await?,
            opened: Instant::now(),
        })
    }

    pub async fn close(self, client: &Client) -> Result<Closed> {
        let after = read(client, self.resource).await?;
        Ok(Closed {
            reading: after.since(&self.before),
            secs: self.opened.elapsed().as_secs_f64(),
        })
    }
}

fn bound(ms: Option<f64>) -> String {
    ms.map(|v| format!("≤ {v} ms"))
        .unwrap_or_else(|| "n/a".into())
}

impl Closed {
    /// "p50 / p99" of the writes' own time in the apiserver.
    pub fn write_quantiles(&self) -> String {
        let w = &self.reading.writes;
        format!(
            "{} / {}",
            bound(w.quantile_bound_ms(0.5)),
            bound(w.quantile_bound_ms(0.99))
        )
    }

    pub fn writes_per_sec(&self) -> f64 {
        self.reading.writes.count() as f64 / self.secs.max(1e-9)
    }

    /// "writes, KiB sent, p50 / p99 of their time in the apiserver".
    pub fn writes_and_bytes(&self) -> String {
        format!(
            "{} writes, {} KiB, {}",
            self.reading.writes.count(),
            self.reading.body_bytes / 1024,
            self.write_quantiles()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"
# HELP apiserver_request_duration_seconds [STABLE] Response latency distribution
apiserver_request_duration_seconds_bucket{component="apiserver",group="vpsnap.dev",resource="vpssnapshots",subresource="",verb="PATCH",le="0.005"} 2
apiserver_request_duration_seconds_bucket{component="apiserver",group="vpsnap.dev",resource="vpssnapshots",subresource="",verb="PATCH",le="0.1"} 9
apiserver_request_duration_seconds_bucket{component="apiserver",group="vpsnap.dev",resource="vpssnapshots",subresource="",verb="PATCH",le="+Inf"} 10
apiserver_request_duration_seconds_bucket{component="apiserver",group="vpsnap.dev",resource="vpssnapshots",subresource="status",verb="APPLY",le="0.005"} 1
apiserver_request_duration_seconds_bucket{component="apiserver",group="vpsnap.dev",resource="vpssnapshots",subresource="status",verb="APPLY",le="0.1"} 1
apiserver_request_duration_seconds_bucket{component="apiserver",group="vpsnap.dev",resource="vpssnapshots",subresource="status",verb="APPLY",le="+Inf"} 1
apiserver_request_duration_seconds_bucket{component="apiserver",group="vpsnap.dev",resource="vpssnapshots",subresource="",verb="LIST",le="0.005"} 50
apiserver_request_duration_seconds_bucket{component="apiserver",group="vpsnap.dev",resource="vpssnapshots",subresource="",verb="LIST",le="0.1"} 50
apiserver_request_duration_seconds_bucket{component="apiserver",group="vpsnap.dev",resource="vpssnapshots",subresource="",verb="LIST",le="+Inf"} 50
apiserver_request_duration_seconds_bucket{component="apiserver",group="",resource="leases",subresource="",verb="PUT",le="+Inf"} 70
apiserver_request_body_size_bytes_sum{group="vpsnap.dev",resource="vpssnapshots",verb="patch"} 5000
apiserver_request_body_size_bytes_count{group="vpsnap.dev",resource="vpssnapshots",verb="patch"} 11
apiserver_request_body_size_bytes_sum{group="vpsnap.dev",resource="vpssnapshots",verb="list"} 7
apiserver_request_body_size_bytes_sum{group="vpsnap.dev",resource="vpsoccupancies",verb="patch"} 900000
"#;

    #[test]
    fn writes_to_the_resource_are_summed_over_verbs_and_subresources_and_reads_are_left_out() {
        let r = parse(TEXT, "vpssnapshots");
        assert_eq!(r.writes.count(), 11);
        assert_eq!(r.writes.quantile_bound_ms(0.25), Some(5.0));
        assert_eq!(r.writes.quantile_bound_ms(0.8), Some(100.0));
        assert_eq!(r.writes.quantile_bound_ms(1.0), None, "in +Inf: no bound");
        assert_eq!(r.body_bytes, 5000, "write bodies of this resource only");
        assert_eq!(parse(TEXT, "vpsoccupancies").body_bytes, 900_000);
    }

    #[test]
    fn a_window_counts_only_what_happened_in_it() {
        let before = parse(TEXT, "vpssnapshots");
        let after = parse(
            &TEXT.replace("le=\"+Inf\"} 10", "le=\"+Inf\"} 30"),
            "vpssnapshots",
        );
        let w = after.since(&before);
        assert_eq!(w.writes.count(), 20);
        assert_eq!(
            w.writes.quantile_bound_ms(0.5),
            None,
            "all 20 new ones over 100 ms"
        );
        assert_eq!(Histogram::default().quantile_bound_ms(0.99), None);
    }
}
