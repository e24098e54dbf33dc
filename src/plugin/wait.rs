//! Waiting for an object to settle, with a progress line on stderr: one line per change, or
//! one line rewritten in place on a terminal. Watches the one object (list/watch on its kind
//! is all the RBAC it needs).
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::Api;
use kube::runtime::watcher;
use serde::de::DeserializeOwned;

use super::CliError;

/// What a look at the object concluded.
pub enum Verdict<T> {
    /// Not there yet; the text is the progress line.
    Pending(String),
    Done(T),
    /// It will not get there by itself; the text says why.
    Failed(String),
}

impl<T> Verdict<T> {
    pub fn is_failed(&self) -> bool {
        matches!(self, Verdict::Failed(_))
    }
}

/// Watches `name` until `judge` says done or failed, or `timeout` passes.
pub async fn until<K, T>(
    api: &Api<K>,
    label: &str,
    name: &str,
    timeout: Duration,
    judge: impl Fn(&K) -> Verdict<T>,
) -> Result<T, CliError>
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let started = Instant::now();
    let mut progress = Progress::new(label);
    let stream = watcher::watch_object(api.clone(), name);
    futures::pin_mut!(stream);
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => {
                progress.finish();
                return Err(CliError::Timeout(format!(
                    "{label}: still not done after {} (last: {}); it goes on in the cluster, \
                     see kubectl vpsnap why {label}",
                    humanize(timeout),
                    progress.last.as_deref().unwrap_or("no status yet"),
                )));
            }
            event = stream.next() => match event {
                Some(Ok(Some(obj))) => match judge(&obj) {
                    Verdict::Pending(line) => progress.show(started.elapsed(), line),
                    Verdict::Done(t) => { progress.finish(); return Ok(t); }
                    Verdict::Failed(why) => { progress.finish(); return Err(CliError::Failed(why)); }
                },
                Some(Ok(None)) => progress.show(started.elapsed(), "not found (deleted?)".into()),
                Some(Err(watcher::Error::WatchError(e) | watcher::Error::InitialListFailed(kube::Error::Api(e)) | watcher::Error::WatchStartFailed(kube::Error::Api(e)))) if e.code == 403 => {
                    progress.finish();
                    return Err(CliError::Api(format!("watching {label}: forbidden by RBAC ({}); the Role needs list and watch", e.message)));
                }
                // The watcher re-lists by itself after transient errors.
                Some(Err(_)) => tokio::time::sleep(Duration::from_millis(500)).await,
                None => {
                    progress.finish();
                    return Err(CliError::Api(format!("watching {label}: the watch ended")));
                }
            },
        }
    }
}

struct Progress {
    label: String,
    last: Option<String>,
    tty: bool,
    dirty: bool,
}

impl Progress {
    fn new(label: &str) -> Self {
        Self {
            label: label.to_owned(),
            last: None,
            tty: std::io::stderr().is_terminal(),
            dirty: false,
        }
    }

    fn show(&mut self, elapsed: Duration, line: String) {
        if self.last.as_deref() == Some(line.as_str()) {
            return;
        }
        let text = format!("[{:>4}s] {}: {line}", elapsed.as_secs(), self.label);
        let mut err = std::io::stderr();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K{text}");
            self.dirty = true;
        } else {
            let _ = writeln!(err, "{text}");
        }
        let _ = err.flush();
        self.last = Some(line);
    }

    fn finish(&mut self) {
        if self.dirty {
            let _ = writeln!(std::io::stderr());
            self.dirty = false;
        }
    }
}

pub fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 && s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s >= 60 && s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}
