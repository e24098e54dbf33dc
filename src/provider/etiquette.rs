//! How one provider account is treated: a token bucket for the request rate, a bound on requests
//! in flight, a pause shared by every caller after a 429, and the retry policy.
//!
//! The providers document no rate limits (docs/providers.md, U9), so the bucket is what
//! keeps a busy cluster polite; the pause makes every controller of the account back off
//! together when the provider asks for it, instead of each one discovering the 429 on its own.
use std::cell::Cell;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;
use tracing::Instrument;

use super::ProviderError;
use super::endpoint::Endpoint;
use crate::telemetry::spans;

tokio::task_local! {
    /// The HTTP status of the attempt in progress, set by the transport as the answer arrives.
    static ATTEMPT_STATUS: Cell<Option<u16>>;
    /// Whether the attempt in progress changes something at the provider.
    static ATTEMPT_CHANGES: bool;
}

/// Whether the request being sent is a change: the transport sends changes on connections that
/// ask the fence again at the socket. Outside an attempt, taken as a change: the safe side.
pub(crate) fn attempt_changes() -> bool {
    ATTEMPT_CHANGES.try_with(|changes| *changes).unwrap_or(true)
}

/// Called by the transport when an answer's status line arrived (outside an attempt: no-op).
pub(crate) fn note_status(code: u16) {
    let _ = ATTEMPT_STATUS.try_with(|s| s.set(Some(code)));
}

/// Receives one call per HTTP attempt and one per wait imposed by the gate; the controller
/// plugs its metrics in here. Labels are static so metric cardinality stays bounded.
pub trait RequestObserver: Send + Sync {
    /// `outcome` is `"ok"` or the error class ([`ProviderError::class`]); `status` the HTTP
    /// status, `None` when no answer arrived (timeout, connection failure).
    fn request(
        &self,
        provider: &'static str,
        op: &'static str,
        outcome: &'static str,
        status: Option<u16>,
        elapsed: Duration,
    );
    /// The gate held a request back (rate limit, in-flight bound or a provider-requested pause).
    fn throttled(&self, provider: &'static str, waited: Duration);
}

/// Observer that records nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoopObserver;

impl RequestObserver for NoopObserver {
    fn request(
        &self,
        _: &'static str,
        _: &'static str,
        _: &'static str,
        _: Option<u16>,
        _: Duration,
    ) {
    }
    fn throttled(&self, _: &'static str, _: Duration) {}
}

/// Whether repeating a request can change the outcome at the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idempotency {
    /// Lists, logins, credential checks: change nothing, safe to repeat.
    Read,
    /// Deletes: change the provider, safe to repeat after a transient failure.
    Idempotent,
    /// Creates and restores: the providers have no idempotency key, so after a timeout or a 5xx
    /// the request may have been carried out. Only a 429 proves it was not.
    NonIdempotent,
}

impl Idempotency {
    /// Whether the request changes something at the provider.
    pub fn mutates(self) -> bool {
        self != Idempotency::Read
    }
}

/// Whether this process may still send requests for the account: leadership fencing. Checked
/// by the gate right before each attempt leaves it, after every wait.
pub trait Fence: Send + Sync + std::fmt::Debug {
    /// `Err(why)` when a request (`mutation` or not) must not be sent now.
    fn admit(&self, mutation: bool) -> Result<(), String>;
}

tokio::task_local! {
    /// The time by which the mutation this task is sending must leave the gate.
    static SEND_BY: Instant;
}

/// Runs `call` with a send-by time: a request of it still waiting in the gate (token, slot,
/// a 429 pause) past `deadline` is dropped, not sent. A create records its intent before the
/// call; another process decides from that record when the create can no longer arrive, so a
/// create must never leave later than its intent promised.
pub async fn send_by<F: Future>(deadline: Instant, call: F) -> F::Output {
    SEND_BY.scope(deadline, call).await
}

/// Rate and concurrency for one account. Zeros are raised to 1: a zero rate would block forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateLimits {
    pub requests_per_second: u32,
    pub burst: u32,
    pub max_in_flight: u32,
}

/// Retry and pause timings. The in-call budget is small on purpose: the reconciler requeues with
/// its own, longer backoff, so a call should fail fast rather than hold a worker for minutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per call, the first one included.
    pub max_attempts: u32,
    /// First backoff ceiling; doubles per attempt (full jitter draws below it).
    pub base_delay: Duration,
    /// Highest backoff ceiling.
    pub max_delay: Duration,
    /// Pause after a 429 that carried no usable `Retry-After`.
    pub default_pause: Duration,
    /// A pause longer than this is not waited out inside a call: the call fails with
    /// `RateLimited { retry_after }` and the caller requeues.
    pub max_in_call_wait: Duration,
    /// Ceiling for a provider-requested pause, so a bogus `Retry-After` cannot stop the account
    /// for days.
    pub max_pause: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            default_pause: Duration::from_secs(1),
            max_in_call_wait: Duration::from_secs(5),
            max_pause: Duration::from_secs(600),
        }
    }
}

struct Bucket {
    /// May go negative: each caller reserves its token up front and sleeps off the deficit,
    /// which serves waiters in arrival order instead of letting them race for each refill.
    tokens: f64,
    refilled: Instant,
}

/// The per-account gate every request of that account passes through.
pub struct Gate {
    provider: &'static str,
    rate: f64,
    burst: f64,
    bucket: Mutex<Bucket>,
    in_flight: Semaphore,
    paused_until: Mutex<Option<Instant>>,
    policy: RetryPolicy,
    observer: Arc<dyn RequestObserver>,
    fence: Option<Arc<dyn Fence>>,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("provider", &self.provider)
            .field("rate", &self.rate)
            .field("burst", &self.burst)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// Held while a request is on the wire; releases the in-flight slot on drop.
pub struct GatePermit<'a> {
    _permit: SemaphorePermit<'a>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded values are plain numbers that are always left consistent, so a panic in
    // another holder does not make them unusable.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Gate {
    pub fn new(
        provider: &'static str,
        limits: GateLimits,
        policy: RetryPolicy,
        observer: Arc<dyn RequestObserver>,
    ) -> Self {
        let rate = f64::from(limits.requests_per_second.max(1));
        let burst = f64::from(limits.burst.max(1));
        Self {
            provider,
            rate,
            burst,
            bucket: Mutex::new(Bucket {
                tokens: burst,
                refilled: Instant::now(),
            }),
            in_flight: Semaphore::new(limits.max_in_flight.max(1) as usize),
            paused_until: Mutex::new(None),
            policy,
            observer,
            fence: None,
        }
    }

    /// The gate, admitting requests only while `fence` does.
    pub fn with_fence(mut self, fence: Option<Arc<dyn Fence>>) -> Self {
        self.fence = fence;
        self
    }

    /// The fence this gate admits by; the transport asks it again at the socket.
    pub fn fence(&self) -> Option<&Arc<dyn Fence>> {
        self.fence.as_ref()
    }

    /// Whether the request may leave now: the fence, then the task's send-by time.
    fn admit(&self, idempotency: Idempotency) -> Result<(), ProviderError> {
        if let Some(fence) = &self.fence {
            fence
                .admit(idempotency.mutates())
                .map_err(ProviderError::Fenced)?;
        }
        if let Ok(deadline) = SEND_BY.try_with(|d| *d)
            && Instant::now() > deadline
        {
            return Err(ProviderError::Fenced(
                "it waited in the request gate past the time it had to be sent by".into(),
            ));
        }
        Ok(())
    }

    pub fn provider(&self) -> &'static str {
        self.provider
    }

    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// Waits for a pause to end, a token and an in-flight slot. Fails with `RateLimited`
    /// without sending anything when the provider asked for a pause longer than the in-call
    /// budget. A cancelled wait keeps its token spent, which errs on the polite side.
    pub async fn acquire(&self) -> Result<GatePermit<'_>, ProviderError> {
        let start = Instant::now();
        // Only real waits are reported, not the microseconds every acquisition takes.
        let mut held_back = self.wait_out_pause().await?;
        let deficit = self.reserve_token();
        if !deficit.is_zero() {
            held_back = true;
            tokio::time::sleep(deficit).await;
        }
        let permit = match self.in_flight.try_acquire() {
            Ok(permit) => permit,
            Err(_) => {
                held_back = true;
                self.in_flight
                    .acquire()
                    .await
                    .map_err(|_| ProviderError::Transient("request gate closed".into()))?
            }
        };
        // A 429 may have arrived while this request queued for its token or slot.
        held_back |= self.wait_out_pause().await?;
        if held_back {
            self.observer.throttled(self.provider, start.elapsed());
        }
        Ok(GatePermit { _permit: permit })
    }

    /// Records a 429: every request of the account waits until the pause ends.
    pub fn note_rate_limited(&self, retry_after: Option<Duration>) {
        let pause = retry_after
            .unwrap_or(self.policy.default_pause)
            .min(self.policy.max_pause);
        let until = Instant::now() + pause;
        let mut paused = lock(&self.paused_until);
        if paused.is_none_or(|current| current < until) {
            *paused = Some(until);
        }
    }

    /// Time left of the current provider-requested pause, if any.
    pub fn paused_for(&self) -> Option<Duration> {
        let until = (*lock(&self.paused_until))?;
        let left = until.saturating_duration_since(Instant::now());
        (!left.is_zero()).then_some(left)
    }

    /// Whether it had to wait.
    async fn wait_out_pause(&self) -> Result<bool, ProviderError> {
        let mut waited = false;
        // Looping because another caller's 429 can extend the pause while this one sleeps.
        while let Some(left) = self.paused_for() {
            if left > self.policy.max_in_call_wait {
                return Err(ProviderError::RateLimited {
                    retry_after: Some(left),
                });
            }
            waited = true;
            tokio::time::sleep(left).await;
        }
        Ok(waited)
    }

    fn reserve_token(&self) -> Duration {
        let mut bucket = lock(&self.bucket);
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        bucket.refilled = now;
        bucket.tokens -= 1.0;
        if bucket.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-bucket.tokens / self.rate)
        }
    }

    /// Full-jitter backoff before attempt `attempt + 1` (`attempt` counts from 1).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self
            .policy
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.policy.max_delay);
        let ceiling_ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::random_range(0..=ceiling_ms))
    }

    fn should_retry(&self, idempotency: Idempotency, err: &ProviderError) -> bool {
        match err {
            // A 429 is the one answer proving the request was not carried out.
            ProviderError::RateLimited { .. } => true,
            ProviderError::Transient(_) => idempotency != Idempotency::NonIdempotent,
            _ => false,
        }
    }

    /// Runs one logical call: each attempt passes the gate and is reported to the observer;
    /// 429s pause the whole account; idempotent calls are retried on transient failures. The
    /// call is one `provider.request` span (method, endpoint template, last status, retries).
    pub async fn run<T, F, Fut>(
        &self,
        endpoint: &Endpoint,
        idempotency: Idempotency,
        attempt_fn: F,
    ) -> Result<T, ProviderError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ProviderError>>,
    {
        let span = spans::provider_request(
            self.provider,
            endpoint.operation,
            endpoint.method,
            endpoint.template,
        );
        let result = self
            .attempts(endpoint.operation, idempotency, attempt_fn, &span)
            .instrument(span.clone())
            .await;
        spans::record_outcome(
            &span,
            match &result {
                Ok(_) => "ok",
                Err(e) => e.class(),
            },
        );
        result
    }

    async fn attempts<T, F, Fut>(
        &self,
        op: &'static str,
        idempotency: Idempotency,
        mut attempt_fn: F,
        span: &tracing::Span,
    ) -> Result<T, ProviderError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ProviderError>>,
    {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            spans::record_retries(span, attempt - 1);
            let result = {
                let _permit = self.acquire().await?;
                self.admit(idempotency)?;
                let start = Instant::now();
                let (result, status) = ATTEMPT_STATUS
                    .scope(Cell::new(None), async {
                        let result = ATTEMPT_CHANGES
                            .scope(idempotency.mutates(), attempt_fn())
                            .await;
                        (result, ATTEMPT_STATUS.with(Cell::get))
                    })
                    .await;
                let outcome = match &result {
                    Ok(_) => "ok",
                    Err(e) => e.class(),
                };
                if let Some(code) = status {
                    spans::record_status(span, code);
                }
                self.observer
                    .request(self.provider, op, outcome, status, start.elapsed());
                result
            };
            let err = match result {
                Ok(value) => return Ok(value),
                Err(err) => err,
            };
            if let ProviderError::RateLimited { retry_after } = &err {
                self.note_rate_limited(*retry_after);
            }
            if attempt >= self.policy.max_attempts || !self.should_retry(idempotency, &err) {
                tracing::debug!(
                    provider = self.provider,
                    op,
                    attempt,
                    class = err.class(),
                    "provider call failed"
                );
                return Err(err);
            }
            tracing::debug!(
                provider = self.provider,
                op,
                attempt,
                class = err.class(),
                "retrying provider call"
            );
            if !matches!(err, ProviderError::RateLimited { .. }) {
                tokio::time::sleep(self.backoff(attempt)).await;
            }
            // After a 429 the next `acquire` waits the pause out, or gives the error back when
            // the pause is too long to wait in-call.
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn gate(rps: u32, burst: u32, in_flight: u32) -> Arc<Gate> {
        Arc::new(Gate::new(
            "test",
            GateLimits {
                requests_per_second: rps,
                burst,
                max_in_flight: in_flight,
            },
            RetryPolicy::default(),
            Arc::new(NoopObserver),
        ))
    }

    #[derive(Default)]
    struct Recorder {
        requests: Mutex<Vec<(&'static str, &'static str)>>,
        throttled: Mutex<Duration>,
    }

    impl RequestObserver for Recorder {
        fn request(
            &self,
            _: &'static str,
            op: &'static str,
            outcome: &'static str,
            _: Option<u16>,
            _: Duration,
        ) {
            lock(&self.requests).push((op, outcome));
        }
        fn throttled(&self, _: &'static str, waited: Duration) {
            *lock(&self.throttled) += waited;
        }
    }

    /// A create that waited in the gate (here for an in-flight slot) past its send-by time
    /// is dropped without being sent; one in time goes out.
    #[tokio::test(start_paused = true)]
    async fn a_create_waiting_past_its_send_by_time_is_dropped() {
        let gate = gate(100, 100, 1);
        let slot = gate.acquire().await.unwrap();
        let sent = Arc::new(AtomicU32::new(0));
        let late = {
            let (gate, sent) = (gate.clone(), sent.clone());
            tokio::spawn(async move {
                let deadline = Instant::now() + Duration::from_secs(2);
                send_by(
                    deadline,
                    gate.run(
                        &crate::provider::endpoint::vps_rest::CREATE_SNAPSHOT,
                        Idempotency::NonIdempotent,
                        || {
                            sent.fetch_add(1, Ordering::SeqCst);
                            async { Ok::<_, ProviderError>(()) }
                        },
                    ),
                )
                .await
            })
        };
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(slot);
        let result = late.await.unwrap();
        assert!(
            matches!(result, Err(ProviderError::Fenced(_))),
            "{result:?}"
        );
        assert_eq!(sent.load(Ordering::SeqCst), 0, "a late create was sent");
        let in_time = send_by(
            Instant::now() + Duration::from_secs(2),
            gate.run(
                &crate::provider::endpoint::vps_rest::CREATE_SNAPSHOT,
                Idempotency::NonIdempotent,
                || async { Ok::<_, ProviderError>(()) },
            ),
        )
        .await;
        assert!(in_time.is_ok());
    }

    /// A fence that closed stops every request at the gate, reads included.
    #[tokio::test]
    async fn a_closed_fence_stops_every_request() {
        #[derive(Debug)]
        struct Closed;
        impl Fence for Closed {
            fn admit(&self, mutation: bool) -> Result<(), String> {
                Err(format!("closed (mutation: {mutation})"))
            }
        }
        let gate = Gate::new(
            "test",
            GateLimits {
                requests_per_second: 10,
                burst: 10,
                max_in_flight: 1,
            },
            RetryPolicy::default(),
            Arc::new(NoopObserver),
        )
        .with_fence(Some(Arc::new(Closed)));
        for idempotency in [
            Idempotency::Read,
            Idempotency::Idempotent,
            Idempotency::NonIdempotent,
        ] {
            let result = gate
                .run(
                    &crate::provider::endpoint::vps_rest::LIST_SNAPSHOTS,
                    idempotency,
                    || async { Ok::<_, ProviderError>(()) },
                )
                .await;
            assert!(
                matches!(result, Err(ProviderError::Fenced(ref m)) if m.contains(&format!("{}", idempotency.mutates())))
            );
        }
    }

    /// Over any window of length `w`, a bucket of rate `r` and burst `b` admits at most
    /// `b + r·w` requests.
    #[tokio::test(start_paused = true)]
    async fn stays_under_the_configured_rate() {
        let (rps, burst) = (5u32, 3u32);
        let gate = gate(rps, burst, 100);
        let times = Arc::new(Mutex::new(Vec::new()));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..60 {
            let gate = gate.clone();
            let times = times.clone();
            tasks.push(tokio::spawn(async move {
                let _permit = gate.acquire().await.unwrap();
                lock(&times).push(Instant::now());
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let mut times = lock(&times).clone();
        times.sort();
        assert_eq!(times.len(), 60);
        for (i, &a) in times.iter().enumerate() {
            for w in [
                Duration::from_millis(500),
                Duration::from_secs(1),
                Duration::from_secs(3),
            ] {
                let n = times[i..].iter().take_while(|&&t| t - a <= w).count() as f64;
                let allowed = f64::from(burst) + f64::from(rps) * w.as_secs_f64();
                assert!(n <= allowed + 1e-9, "{n} acquisitions in {w:?} > {allowed}");
            }
        }
        // And it does not throttle far more than needed: 57 requests beyond the burst at 5/s.
        let total = *times.last().unwrap() - start;
        assert!(total <= Duration::from_millis(11_500), "took {total:?}");
        assert!(total >= Duration::from_millis(11_300), "took {total:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn bounds_requests_in_flight() {
        let gate = gate(1000, 1000, 2);
        let current = Arc::new(AtomicU32::new(0));
        let peak = Arc::new(AtomicU32::new(0));
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let (gate, current, peak) = (gate.clone(), current.clone(), peak.clone());
            tasks.push(tokio::spawn(async move {
                let _permit = gate.acquire().await.unwrap();
                let now = current.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                current.fetch_sub(1, Ordering::SeqCst);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(peak.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn waits_out_retry_after_for_every_caller() {
        let gate = gate(100, 100, 10);
        gate.note_rate_limited(Some(Duration::from_secs(3)));
        let start = Instant::now();
        let _permit = gate.acquire().await.unwrap();
        assert!(start.elapsed() >= Duration::from_secs(3));
        assert!(start.elapsed() < Duration::from_millis(3100));
    }

    #[tokio::test(start_paused = true)]
    async fn pause_without_retry_after_uses_the_default() {
        let gate = gate(100, 100, 10);
        gate.note_rate_limited(None);
        assert_eq!(gate.paused_for(), Some(Duration::from_secs(1)));
        let start = Instant::now();
        drop(gate.acquire().await.unwrap());
        assert!(start.elapsed() >= Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn long_pause_fails_fast_without_sending() {
        let gate = gate(100, 100, 10);
        gate.note_rate_limited(Some(Duration::from_secs(120)));
        let start = Instant::now();
        let err = gate.acquire().await.err().unwrap();
        assert!(
            matches!(err, ProviderError::RateLimited { retry_after: Some(d) } if d > Duration::from_secs(100))
        );
        assert_eq!(start.elapsed(), Duration::ZERO);
        // A bogus Retry-After is capped.
        gate.note_rate_limited(Some(Duration::from_secs(86_400 * 30)));
        assert!(gate.paused_for().unwrap() <= Duration::from_secs(600));
    }

    async fn run_with(
        gate: &Gate,
        idempotency: Idempotency,
        errors: Vec<ProviderError>,
    ) -> (Result<u32, ProviderError>, u32) {
        let calls = AtomicU32::new(0);
        let errors = Mutex::new(errors);
        let result = gate
            .run(&OP, idempotency, || {
                calls.fetch_add(1, Ordering::SeqCst);
                let next = lock(&errors).pop();
                async move {
                    match next {
                        Some(e) => Err(e),
                        None => Ok(7),
                    }
                }
            })
            .await;
        (result, calls.load(Ordering::SeqCst))
    }

    const OP: Endpoint = Endpoint {
        operation: "op",
        method: "GET",
        template: "things/",
    };

    fn transient() -> ProviderError {
        ProviderError::Transient("boom".into())
    }

    #[tokio::test(start_paused = true)]
    async fn idempotent_calls_retry_transient_errors_up_to_the_limit() {
        let gate = gate(100, 100, 10);
        let (result, calls) = run_with(
            &gate,
            Idempotency::Idempotent,
            vec![transient(), transient()],
        )
        .await;
        assert_eq!((result, calls), (Ok(7), 3));
        let (result, calls) = run_with(
            &gate,
            Idempotency::Idempotent,
            vec![transient(), transient(), transient()],
        )
        .await;
        assert_eq!((result, calls), (Err(transient()), 3));
    }

    #[tokio::test(start_paused = true)]
    async fn non_idempotent_calls_are_not_retried_after_transient_errors() {
        let gate = gate(100, 100, 10);
        let (result, calls) = run_with(&gate, Idempotency::NonIdempotent, vec![transient()]).await;
        assert_eq!((result, calls), (Err(transient()), 1));
    }

    #[tokio::test(start_paused = true)]
    async fn final_errors_are_never_retried() {
        let gate = gate(100, 100, 10);
        let err = ProviderError::Auth("no".into());
        let (result, calls) = run_with(&gate, Idempotency::Idempotent, vec![err.clone()]).await;
        assert_eq!((result, calls), (Err(err), 1));
    }

    #[tokio::test(start_paused = true)]
    async fn only_real_waits_are_reported_as_throttling() {
        let recorder = Arc::new(Recorder::default());
        let gate = Gate::new(
            "test",
            GateLimits {
                requests_per_second: 1,
                burst: 2,
                max_in_flight: 10,
            },
            RetryPolicy::default(),
            recorder.clone(),
        );
        drop(gate.acquire().await.unwrap());
        drop(gate.acquire().await.unwrap());
        assert_eq!(*lock(&recorder.throttled), Duration::ZERO);
        drop(gate.acquire().await.unwrap());
        let throttled = *lock(&recorder.throttled);
        assert!(
            throttled >= Duration::from_secs(1) && throttled < Duration::from_millis(1010),
            "{throttled:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn non_idempotent_calls_retry_after_429_once_the_pause_ends() {
        let recorder = Arc::new(Recorder::default());
        let gate = Gate::new(
            "test",
            GateLimits {
                requests_per_second: 100,
                burst: 100,
                max_in_flight: 10,
            },
            RetryPolicy::default(),
            recorder.clone(),
        );
        let start = Instant::now();
        let limited = ProviderError::RateLimited {
            retry_after: Some(Duration::from_secs(2)),
        };
        let (result, calls) = run_with(&gate, Idempotency::NonIdempotent, vec![limited]).await;
        assert_eq!((result, calls), (Ok(7), 2));
        assert!(start.elapsed() >= Duration::from_secs(2));
        assert_eq!(
            *lock(&recorder.requests),
            vec![("op", "RateLimited"), ("op", "ok")]
        );
        assert!(*lock(&recorder.throttled) >= Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_retry_after_is_returned_to_the_caller() {
        let gate = gate(100, 100, 10);
        let limited = ProviderError::RateLimited {
            retry_after: Some(Duration::from_secs(60)),
        };
        let (result, calls) = run_with(&gate, Idempotency::Idempotent, vec![limited]).await;
        assert_eq!(calls, 1);
        assert!(
            matches!(result, Err(ProviderError::RateLimited { retry_after: Some(d) }) if d > Duration::from_secs(55))
        );
    }

    #[test]
    fn backoff_is_jittered_below_a_doubling_capped_ceiling() {
        let gate = gate(1, 1, 1);
        for attempt in 1..=20 {
            let ceiling = Duration::from_millis(200)
                .saturating_mul(1 << (attempt - 1).min(16))
                .min(Duration::from_secs(5));
            for _ in 0..50 {
                assert!(gate.backoff(attempt) <= ceiling);
            }
        }
        let draws: std::collections::HashSet<_> = (0..50).map(|_| gate.backoff(5)).collect();
        assert!(draws.len() > 1, "backoff is not jittered");
    }
}
