//! One resync timer per server instead of one per settled object.
//!
//! A settled object has nothing to do until its server is listed again, and its server's
//! listing is shared by all the server's objects. Asking kube-runtime to requeue each object
//! kept a scheduler entry per object for the whole resync period — two copies of a reference
//! with name, namespace, version and uid, the largest thing the operator held besides the
//! objects themselves (heap profile in the README). The clock keeps one deadline per server;
//! when it rings, every object declared on that server is reconciled, and each settled one
//! asks for the next ring. A server listed once per ring keeps the resync contract (at most
//! one listing per server per resync period) without any per-object state.
use futures::{Stream, StreamExt};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;
// The runtime's clock, so a paused test clock drives the dial as it drives the timers.
use tokio::time::Instant;

use crate::controller::listings::ServerKey;

/// Servers by when they ring, and each server's deadline (the earliest asked for).
#[derive(Default)]
struct Dial {
    by_time: BTreeSet<(Instant, Arc<ServerKey>)>,
    deadline: HashMap<Arc<ServerKey>, Instant>,
}

impl Dial {
    /// Whether the dial's first deadline moved earlier.
    fn ring_at(&mut self, server: &ServerKey, at: Instant) -> bool {
        let first = self.next();
        match self.deadline.get_key_value(server) {
            Some((_, old)) if *old <= at => return false,
            Some((key, old)) => {
                let key = key.clone();
                self.by_time.remove(&(*old, key.clone()));
                self.by_time.insert((at, key.clone()));
                self.deadline.insert(key, at);
            }
            None => {
                let key = Arc::new(server.clone());
                self.by_time.insert((at, key.clone()));
                self.deadline.insert(key, at);
            }
        }
        first.is_none_or(|f| at < f)
    }

    /// The servers whose deadline is not after `now`, forgotten as they are handed out.
    fn take_due(&mut self, now: Instant) -> Vec<Arc<ServerKey>> {
        let mut due = Vec::new();
        while let Some((at, _)) = self.by_time.first()
            && *at <= now
        {
            let (_, key) = self.by_time.pop_first().expect("a first entry");
            self.deadline.remove(&key);
            due.push(key);
        }
        due
    }

    fn next(&self) -> Option<Instant> {
        self.by_time.first().map(|(at, _)| *at)
    }
}

/// The per-server resync deadlines of one kind's objects.
#[derive(Default)]
pub struct ResyncClock {
    dial: Mutex<Dial>,
    earlier: Notify,
}

impl ResyncClock {
    /// The server's objects are to be looked at again at `at`, or earlier if already asked.
    pub fn ring_at(&self, server: &ServerKey, at: Instant) {
        if self.dial.lock().expect("clock lock").ring_at(server, at) {
            // A permit is kept when nobody waits, so the ringer never misses an earlier time.
            self.earlier.notify_one();
        }
    }

    /// Servers as their deadlines pass, each once per deadline.
    pub fn rings(self: Arc<Self>) -> impl Stream<Item = Arc<ServerKey>> + Send + 'static {
        futures::stream::unfold(self, |clock| async move {
            loop {
                let (due, next) = {
                    let mut dial = clock.dial.lock().expect("clock lock");
                    (dial.take_due(Instant::now()), dial.next())
                };
                if !due.is_empty() {
                    return Some((futures::stream::iter(due), clock));
                }
                match next {
                    Some(at) => tokio::select! {
                        () = tokio::time::sleep_until(at) => {}
                        () = clock.earlier.notified() => {}
                    },
                    None => clock.earlier.notified().await,
                }
            }
        })
        .flatten()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::controller::listings::Class;

    fn server(n: u64) -> ServerKey {
        ServerKey {
            provider: ("ns".into(), "p".into()),
            server: n,
            class: Class::Snapshot,
        }
    }

    #[test]
    fn a_server_rings_once_at_the_earliest_time_asked_and_then_is_forgotten() {
        let t0 = Instant::now();
        let s = |secs| t0 + Duration::from_secs(secs);
        let mut dial = Dial::default();
        assert!(dial.ring_at(&server(1), s(60)), "first deadline");
        assert!(
            !dial.ring_at(&server(1), s(66)),
            "a later ask changes nothing"
        );
        assert!(dial.ring_at(&server(1), s(30)), "an earlier one moves it");
        assert!(!dial.ring_at(&server(2), s(45)), "not before the first");
        assert_eq!(dial.next(), Some(s(30)));
        assert!(dial.take_due(s(29)).is_empty());
        assert_eq!(
            dial.take_due(s(50))
                .iter()
                .map(|k| k.server)
                .collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert!(
            dial.take_due(s(1000)).is_empty(),
            "each deadline rings once"
        );
        assert_eq!(dial.next(), None);
        assert!(dial.deadline.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn the_stream_wakes_for_an_earlier_deadline_set_while_it_waits() {
        let clock = Arc::new(ResyncClock::default());
        let now = Instant::now();
        clock.ring_at(&server(1), now + Duration::from_secs(3600));
        let mut rings = Box::pin(clock.clone().rings());
        let waiter = tokio::spawn(async move { rings.next().await.map(|k| k.server) });
        tokio::task::yield_now().await;
        clock.ring_at(&server(2), now + Duration::from_secs(5));
        let first = tokio::time::timeout(Duration::from_secs(60), waiter)
            .await
            .expect("rang long before the hour")
            .expect("task");
        assert_eq!(first, Some(2));
    }
}
