//! Carries out one decided step. Every apiserver write is conditional on the version the
//! decision was made from, so a decision on outdated facts cannot overwrite a newer state: the
//! write fails with a conflict and the reconcile runs again on the latest facts. A provider
//! mutation is only sent after such a write went through (the claim before a create, the
//! eviction mark before a delete).
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use tracing::Instrument;

use super::claim;
use super::decide::{self, CleanupStep, CreateAnswer, Requeue, Step, Verdict, Victim};
use super::facts::Facts;
use super::index::{InFlight, ObjKey, Writer, server_key};
use super::kind::RestorePoint;
use super::reason::Reason;
use super::report;
use crate::controller::context::Context;
use crate::controller::listings::ServerGuard;
use crate::controller::registry::ProviderHandle;
use crate::controller::{Error, ProviderStep, WriteStep, status, timing};
use crate::provider::ProviderError;
use crate::telemetry::metrics::KindLabels;
use crate::telemetry::spans;

/// What a step acts on: the object as the facts saw it, and the server it holds (a create lets
/// the server go while it writes and calls, holding a reservation instead).
pub struct Act<'a, K: RestorePoint> {
    pub ctx: &'a Context,
    pub obj: Arc<K>,
    pub facts: &'a Facts,
    pub handle: Option<&'a ProviderHandle>,
    pub guard: Option<ServerGuard>,
    /// When the reconcile began, before it waited for the server (for the create's timings).
    pub started: Instant,
}

impl<'a, K: RestorePoint> Act<'a, K> {
    fn api(&self) -> Api<K> {
        Api::namespaced(
            self.ctx.client.clone(),
            &self.obj.namespace().unwrap_or_default(),
        )
    }

    fn key(&self) -> String {
        self.facts.subject.view.key.clone()
    }

    fn server(&self) -> u64 {
        self.obj.common().server_id.max(0) as u64
    }

    fn requeue(&self, r: Requeue) -> Action {
        let server = server_key(self.obj.as_ref());
        let clock = K::index(self.ctx).map(|index| timing::ServerClock {
            clock: index.clock(),
            server: &server,
            listed: self.facts.server.as_ref().map(|s| s.listing.fetched),
        });
        timing::requeue(r, self.handle, clock)
    }

    /// The server's lock, taken again when a create let it go.
    async fn server_lock(&mut self) -> &mut ServerGuard {
        if self.guard.is_none() {
            let key = server_key(self.obj.as_ref());
            self.guard = Some(self.ctx.listings.lock(&key).await);
        }
        self.guard.as_mut().expect("the server's lock is held")
    }

    pub async fn apply(mut self, step: Step) -> Result<Action, Error> {
        match step {
            // `decide` is re-run by the caller once the listing is read.
            Step::List(_) => Ok(Action::requeue(Duration::from_secs(1))),
            Step::Keep(r) => Ok(self.requeue(r)),
            Step::Report(v) => {
                let obj = self.obj.clone();
                self.report(&obj, &v).await?;
                Ok(self.requeue(v.requeue))
            }
            Step::Track {
                verdict,
                proof,
                claim: add_finalizer,
                adopted,
            } => {
                let mut obj = self.obj.clone();
                if add_finalizer {
                    obj = Arc::new(self.claim(&obj, None).await?);
                }
                self.report(&obj, &verdict).await?;
                // The id is recorded: the create this process sent has served its purpose.
                self.ctx.sent.forget(&self.key());
                if adopted && let Some(item) = &verdict.item {
                    let how = match proof {
                        decide::Proof::Imported => "imported by spec.importId",
                        _ => "found by its marker after a create whose answer was not seen",
                    };
                    self.ctx
                        .event(
                            obj.as_ref(),
                            false,
                            "Adopted",
                            "Adopt",
                            format!("{} {} {how}", self.facts.noun, item.id),
                        )
                        .await;
                }
                Ok(self.requeue(verdict.requeue))
            }
            Step::Evict { victims, verdict } => {
                for victim in &victims {
                    self.evict(victim).await?;
                }
                let obj = self.obj.clone();
                self.report(&obj, &verdict).await?;
                Ok(self.requeue(verdict.requeue))
            }
            Step::FinishEviction { id } => {
                self.delete_evicted(&id).await?;
                Ok(self.requeue(Requeue::Resync))
            }
            Step::Create => self.create().await,
        }
    }

    /// Writes the status `verdict` renders for `seen`, conditional on its version, and
    /// publishes the Event a change of reason deserves.
    async fn report(&self, seen: &Arc<K>, verdict: &Verdict) -> Result<(), Error> {
        let current = seen.status().cloned().unwrap_or_default();
        let desired = report::render(
            &current,
            seen.meta().generation,
            verdict,
            claim::intent_of(seen.as_ref()),
            K::provider_name,
            Timestamp::now(),
        );
        let flight = self.write_started(seen.as_ref());
        let written = status::write(&self.api(), seen.as_ref(), seen.status(), &desired)
            .instrument(spans::status_write(K::KIND))
            .await
            .map_err(|e| Error::write(WriteStep::Status, e))?;
        self.record(seen.as_ref(), written, flight);
        if let Some(note) = report::transition(self.facts.subject.view.reason, verdict) {
            self.ctx
                .event(
                    seen.as_ref(),
                    note.warning,
                    note.reason,
                    note.action,
                    note.message,
                )
                .await;
        }
        Ok(())
    }

    /// Holds what the watch delivers for `obj` until the write about to be sent is answered
    /// (the watch may deliver the write first).
    fn write_started(&self, obj: &K) -> Option<InFlight<'a, K>> {
        K::index(self.ctx).map(|index| index.write_started(ObjKey::of(obj)))
    }

    /// Records what a write made (`None`: nothing needed writing) and ends its flight at once,
    /// so what the watch delivered meanwhile is judged now rather than after the steps that
    /// follow.
    fn record(&self, seen: &K, written: Option<K>, flight: Option<InFlight<'a, K>>) {
        // Without an index there is no flight; without a write the flight just ends.
        let (Some(written), Some(flight)) = (written, flight) else {
            return;
        };
        let by = if ObjKey::of(&written) == ObjKey::of(self.obj.as_ref()) {
            Writer::Itself
        } else {
            Writer::Neighbour
        };
        flight.answered(seen.resource_version().as_deref(), written, by);
    }

    async fn claim(&self, seen: &Arc<K>, create_at: Option<Timestamp>) -> Result<K, Error> {
        let flight = self.write_started(seen.as_ref());
        let written = claim::claim(&self.api(), seen.as_ref(), create_at)
            .instrument(spans::claim(create_at.is_some()))
            .await
            .map_err(|e| Error::write(WriteStep::Claim, e))?;
        self.record(seen.as_ref(), Some(written.clone()), flight);
        Ok(written)
    }

    /// Records the intent with the finalizer (conditional), then sends the one create. The
    /// server's lock is let go meanwhile — the slot stays reserved, so neighbours planned in
    /// the meantime count it — and taken again to record the answer in the listing.
    async fn create(mut self) -> Result<Action, Error> {
        let Some(handle) = self.handle else {
            return Ok(Action::requeue(Duration::from_secs(60)));
        };
        let key = self.key();
        if let Some(guard) = self.guard.as_mut() {
            guard.reserve(&key);
        }
        self.guard = None;
        let mut laps = Laps::since(self.started);
        laps.lock_and_facts = laps.lap();
        let sent = self.claim_and_create(handle, &mut laps).await;
        let guard = self.server_lock().await;
        guard.unreserve(&key);
        laps.relock = laps.lap();
        let (claimed, at, answer) = sent?;
        match &answer {
            CreateAnswer::Made(item) => guard.add(item.clone()),
            CreateAnswer::Accepted | CreateAnswer::Unknown(_) | CreateAnswer::LimitReached(_) => {
                guard.invalidate()
            }
            _ => {}
        }
        // The answer is in the listing: neighbours count the slot from there on. The status
        // write below is conditional on its own version and needs no lock, so the server's
        // next objects do not wait for it.
        self.guard = None;
        if matches!(answer, CreateAnswer::Made(_) | CreateAnswer::Accepted) {
            tracing::info!(kind = K::KIND, object = %key, server = self.server(), "created at the provider");
        }
        let mut facts = self.facts.clone();
        facts.subject.view.intent = Some(at);
        let deadline = facts
            .subject
            .failure_deadline
            .clone()
            .unwrap_or(K::DEFAULT_DEADLINE);
        let verdict = decide::after_create(&facts, &answer, deadline);
        let after = Act {
            ctx: self.ctx,
            obj: claimed.clone(),
            facts: &facts,
            handle: self.handle,
            guard: None,
            started: self.started,
        };
        after.report(&claimed, &verdict).await?;
        laps.status = laps.lap();
        laps.log(&key);
        Ok(after.requeue(verdict.requeue))
    }

    /// The intent (conditional write) and the create call, without the server's lock.
    async fn claim_and_create(
        &self,
        handle: &ProviderHandle,
        laps: &mut Laps,
    ) -> Result<(Arc<K>, Timestamp, CreateAnswer), Error> {
        let now = Timestamp::now();
        // The create must leave within the send window of its intent (see `fencing`).
        let send_by = tokio::time::Instant::now() + self.ctx.timings.send_window();
        let claimed = Arc::new(self.claim(&self.obj, Some(now)).await?);
        laps.claim = laps.lap();
        // Read back as it is stored, so the marker matches the annotation exactly.
        let at = claim::intent_of(claimed.as_ref())
            .and_then(|i| i.requested_at.parse::<Timestamp>().ok())
            .unwrap_or(now);
        self.ctx.sent.insert(&self.key(), at);
        let marker = claimed.marker();
        let description = claimed.provider_description();
        let create = K::create(
            &handle.client,
            self.server(),
            &marker,
            description.as_deref(),
        );
        let answer = match crate::provider::send_by(send_by, create).await {
            Ok(Some(item)) => CreateAnswer::Made(item),
            Ok(None) => CreateAnswer::Accepted,
            Err(e) if e.outcome_unknown() => {
                tracing::warn!(kind = K::KIND, object = %self.key(), error = %e, "create outcome unknown; will list before trying again");
                CreateAnswer::Unknown(e.to_string())
            }
            Err(ProviderError::LimitReached(m)) => CreateAnswer::LimitReached(m),
            Err(ProviderError::RateLimited { retry_after }) => {
                CreateAnswer::RateLimited(retry_after)
            }
            Err(ProviderError::NotFound(_)) => CreateAnswer::ServerNotFound,
            Err(
                e @ (ProviderError::InvalidRequest(_)
                | ProviderError::Unsupported(_)
                | ProviderError::Protected(_)
                | ProviderError::InvalidState(_)),
            ) => CreateAnswer::Rejected(e.to_string()),
            Err(e) => return Err(Error::provider(ProviderStep::Create, e)),
        };
        laps.call = laps.lap();
        Ok((claimed, at, answer))
    }

    /// Marks the victim `Evicted` (conditional on the version the plan saw: a victim pinned
    /// or changed since is not touched), then deletes its provider object. Its slot counts as
    /// taken until a listing no longer shows it.
    async fn evict(&mut self, victim: &Victim) -> Result<(), Error> {
        let Some(handle) = self.handle else {
            return Ok(());
        };
        let key = ObjKey::parse(&victim.key);
        let seen = K::index(self.ctx).and_then(|i| i.latest(&key));
        let Some(seen) = seen.filter(|o| o.resource_version() == victim.resource_version) else {
            return Err(Error::Conflict {
                step: WriteStep::EvictionMark,
            });
        };
        let message = format!(
            "evicted from server {} to make room for {} (per-server limit; evictable: true)",
            self.server(),
            self.key()
        );
        let current = seen.status().cloned().unwrap_or_default();
        let marked = report::evicted(
            &current,
            seen.meta().generation,
            &victim.id,
            &message,
            Timestamp::now(),
        );
        let api: Api<K> = Api::namespaced(self.ctx.client.clone(), &key.namespace);
        let flight = self.write_started(seen.as_ref());
        let written = status::write(&api, seen.as_ref(), seen.status(), &marked)
            .instrument(spans::status_write(K::KIND))
            .await
            .map_err(|e| Error::write(WriteStep::EvictionMark, e))?;
        self.record(seen.as_ref(), written, flight);
        match K::delete(&handle.client, self.server(), &victim.id).await {
            Ok(()) | Err(ProviderError::NotFound(_)) => {}
            Err(e) => return Err(Error::provider(ProviderStep::Delete, e)),
        }
        self.server_lock().await.note_deleting(&victim.id);
        self.ctx
            .metrics
            .evictions
            .get_or_create(&KindLabels { kind: K::KIND })
            .inc();
        tracing::info!(kind = K::KIND, victim = %victim.key, requester = %self.key(), server = self.server(), id = %victim.id, "evicted");
        self.ctx
            .event(seen.as_ref(), false, "Evicted", "Evict", message)
            .await;
        Ok(())
    }

    async fn delete_evicted(&mut self, id: &str) -> Result<(), Error> {
        let Some(handle) = self.handle else {
            return Ok(());
        };
        match K::delete(&handle.client, self.server(), id).await {
            Ok(()) | Err(ProviderError::NotFound(_)) => {
                self.server_lock().await.note_deleting(id);
                tracing::info!(kind = K::KIND, object = %self.key(), id, "deleted what an eviction left at the provider");
                Ok(())
            }
            Err(e) => Err(Error::provider(ProviderStep::Delete, e)),
        }
    }

    /// The deletion path: delete at the provider (through the breaker), then let the object go.
    pub async fn cleanup(self, step: CleanupStep) -> Result<Action, Error> {
        match step {
            CleanupStep::List => Ok(Action::requeue(Duration::from_secs(1))),
            CleanupStep::Wait => Ok(self.requeue(decide::Requeue::Slow)),
            CleanupStep::Release { retained } => {
                if let Some(id) = retained {
                    self.ctx
                        .event(
                            self.obj.as_ref(),
                            false,
                            "Retained",
                            "Delete",
                            format!(
                                "{} {id} left at the provider (deletionPolicy Retain)",
                                self.facts.noun
                            ),
                        )
                        .await;
                }
                self.release().await
            }
            CleanupStep::Hold(v) => {
                let obj = self.obj.clone();
                self.report(&obj, &v).await?;
                Ok(self.requeue(v.requeue))
            }
            CleanupStep::Delete { id } => self.delete(id).await,
        }
    }

    async fn release(&self) -> Result<Action, Error> {
        claim::release(&self.api(), self.obj.as_ref())
            .await
            .map_err(|e| Error::write(WriteStep::FinalizerRelease, e))?;
        self.ctx.sent.forget(&self.key());
        Ok(Action::await_change())
    }

    async fn delete(mut self, id: String) -> Result<Action, Error> {
        let Some(handle) = self.handle else {
            return Ok(Action::requeue(Duration::from_secs(60)));
        };
        let now = Timestamp::now();
        // Retention pruning by a schedule is the operator's own plan, not an outside burst.
        let planned = self
            .obj
            .annotations()
            .contains_key(crate::controller::schedule::PRUNED_BY_SCHEDULE);
        let acknowledged = planned || handle.deletions_allowed_until.is_some_and(|t| t > now);
        let allowed = handle
            .breaker
            .lock()
            .expect("breaker lock")
            .try_start(now, acknowledged);
        if !allowed {
            let provider = self.obj.common().provider.to_string();
            let v = Verdict::new(
                Reason::DeletionHeld,
                format!(
                    "deletion held by the mass-deletion breaker of VpsProvider {provider:?}: too many deletions at once. To let them through, annotate it: kubectl annotate vpsp {provider} {}=<RFC 3339 time a few minutes ahead>",
                    crate::controller::provider::ALLOW_DELETIONS_UNTIL
                ),
                Requeue::After(Duration::from_secs(30)),
            );
            let obj = self.obj.clone();
            self.report(&obj, &v).await?;
            return Ok(self.requeue(v.requeue));
        }
        match K::delete(&handle.client, self.server(), &id).await {
            Ok(()) | Err(ProviderError::NotFound(_)) => {
                self.server_lock().await.note_deleting(&id);
                self.ctx
                    .event(
                        self.obj.as_ref(),
                        false,
                        "Deleted",
                        "Delete",
                        format!("{} {id} deleted at the provider", self.facts.noun),
                    )
                    .await;
                self.release().await
            }
            Err(e @ ProviderError::Protected(_)) => {
                let v = Verdict::new(
                    Reason::DeletionRefused,
                    format!(
                        "the provider refuses to delete {} {id}: {e}; unprotect it or set deletionPolicy: Retain",
                        self.facts.noun
                    ),
                    Requeue::Slow,
                );
                let obj = self.obj.clone();
                self.report(&obj, &v).await?;
                Ok(self.requeue(v.requeue))
            }
            Err(e) => Err(Error::provider(ProviderStep::Delete, e)),
        }
    }
}

/// Where one create spent its time, in milliseconds, for the `create timings` debug log (the
/// wait for a worker before the reconcile began is not in it).
struct Laps {
    last: Instant,
    lock_and_facts: u64,
    claim: u64,
    call: u64,
    relock: u64,
    status: u64,
}

impl Laps {
    fn since(start: Instant) -> Self {
        Laps {
            last: start,
            lock_and_facts: 0,
            claim: 0,
            call: 0,
            relock: 0,
            status: 0,
        }
    }

    /// Milliseconds since the previous lap.
    fn lap(&mut self) -> u64 {
        let now = Instant::now();
        let took = now.duration_since(self.last).as_millis() as u64;
        self.last = now;
        took
    }

    fn log(&self, object: &str) {
        tracing::debug!(
            object = %object,
            lock_and_facts_ms = self.lock_and_facts,
            claim_ms = self.claim,
            create_ms = self.call,
            relock_ms = self.relock,
            status_ms = self.status,
            "create timings"
        );
    }
}
