//! The shared simulator object and the door every API request goes through: call counting,
//! then the seeded fault dice, before a handler may touch the state.

use super::config::SimConfig;
use super::conn::Conn;
use super::faults::{Decision, FaultEngine, Faults, LostMode, PreFault, TIMEOUT_HOLD};
use super::model::{Caller, SimApi, SimStatus};
use super::state::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// An answer sent instead of the normal one (fault, auth failure, validation error); boxed so
/// `Result`s carrying it stay small.
pub struct Answer(Box<Response>);

impl From<Response> for Answer {
    fn from(resp: Response) -> Self {
        Self(Box::new(resp))
    }
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        *self.0
    }
}

pub struct Sim {
    config: SimConfig,
    state: Mutex<State>,
    engine: Mutex<FaultEngine>,
    shutdown: watch::Receiver<bool>,
    /// Survives resets, so a waiter is never left on a dropped state.
    changes: Arc<Notify>,
}

const HTML_503: &str = "<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n\
<body>\r\n<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n<hr><center>nginx</center>\r\n\
</body>\r\n</html>\r\n";
const HTML_502: &str = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n\
<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";
const HTML_429: &str = "<html>\r\n<head><title>429 Too Many Requests</title></head>\r\n\
<body>\r\n<center><h1>429 Too Many Requests</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";

fn html(status: StatusCode, body: &'static str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

impl Sim {
    pub fn new(config: SimConfig, shutdown: watch::Receiver<bool>) -> Self {
        let changes = Arc::new(Notify::new());
        Self {
            state: Mutex::new(State::new(config.clone(), changes.clone())),
            engine: Mutex::new(FaultEngine::new(config.faults.clone(), config.seed)),
            config,
            shutdown,
            changes,
        }
    }

    /// Notified on every change of the history, the call log or the held answers.
    pub fn changes(&self) -> &Notify {
        &self.changes
    }

    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// Locks are held only for bookkeeping, never across an await; a panic while holding one
    /// leaves consistent-enough data for a simulator, so poisoning is ignored.
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn engine(&self) -> MutexGuard<'_, FaultEngine> {
        self.engine.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn faults(&self) -> Faults {
        self.engine().faults().clone()
    }

    pub fn set_faults(&self, faults: Faults) {
        self.engine().set(faults);
    }

    /// Back to the start-time state: objects, history, counters, sessions, faults and dice.
    pub fn reset(&self) {
        *self.state() = State::new(self.config.clone(), self.changes.clone());
        self.changes.notify_waiters();
        *self.engine() = FaultEngine::new(self.config.faults.clone(), self.config.seed);
    }

    /// Sleeps, but wakes early at shutdown so held requests never delay it.
    async fn pause(&self, d: Duration) {
        let mut shutdown = self.shutdown.clone();
        tokio::select! {
            () = tokio::time::sleep(d) => {}
            _ = shutdown.wait_for(|stop| *stop) => {}
        }
    }

    /// Counts and logs the call under `key` (with its `User-Agent`), then applies latency and
    /// the request-level faults. `Err` is the answer to send instead of running the handler.
    pub async fn enter(
        &self,
        key: &str,
        api: SimApi,
        conn: &Conn,
        headers: &HeaderMap,
    ) -> Result<Decision, Answer> {
        let mut decision = self.engine().decide();
        let fault = decision.pre.map(|p| match p {
            PreFault::Throttle { .. } => "rate_429",
            PreFault::Unavailable => "error_5xx",
            PreFault::Timeout => "timeout",
            PreFault::Drop => "drop",
        });
        let user_agent = headers
            .get(header::USER_AGENT)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        {
            let mut st = self.state();
            st.count_call(key);
            decision.caller = st.log_call(api, key, user_agent, fault);
        }
        if !decision.latency.is_zero() {
            self.state().count_fault("latency");
            self.pause(decision.latency).await;
        }
        match decision.pre {
            None => Ok(decision),
            Some(PreFault::Throttle { retry_after_secs }) => {
                self.state().count_fault("rate_429");
                let mut resp = match api {
                    SimApi::VpsRest => (
                        StatusCode::TOO_MANY_REQUESTS,
                        axum::Json(serde_json::json!({
                            "detail": format!(
                                "Request was throttled. Expected available in {retry_after_secs} seconds."
                            )
                        })),
                    )
                        .into_response(),
                    _ => html(StatusCode::TOO_MANY_REQUESTS, HTML_429),
                };
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
                Err(resp.into())
            }
            Some(PreFault::Unavailable) => {
                self.state().count_fault("error_5xx");
                Err(html(StatusCode::SERVICE_UNAVAILABLE, HTML_503).into())
            }
            Some(PreFault::Timeout) => {
                self.state().count_fault("timeout");
                self.pause(TIMEOUT_HOLD).await;
                conn.kill();
                // Never written: the killed connection fails before the first byte.
                Err(StatusCode::INTERNAL_SERVER_ERROR.into_response().into())
            }
            Some(PreFault::Drop) => {
                self.state().count_fault("drop");
                conn.kill();
                // Never written: the killed connection fails before the first byte.
                Err(StatusCode::INTERNAL_SERVER_ERROR.into_response().into())
            }
        }
    }

    /// Holds a performed create's answer back for `d`, visible meanwhile in the held answers
    /// (also when the client gives up and the request is dropped).
    pub async fn hold_answer(&self, d: Duration, caller: &Caller) {
        struct Held<'a>(&'a Sim, &'a Caller);
        impl Drop for Held<'_> {
            fn drop(&mut self) {
                self.0.state().release(self.1);
            }
        }
        {
            let mut st = self.state();
            st.count_fault("hold_create");
            st.hold(caller);
        }
        let _held = Held(self, caller);
        self.pause(d).await;
    }

    /// The answer to a create that was performed but whose response is lost.
    pub fn lose(&self, mode: LostMode, conn: &Conn) -> Response {
        self.state().count_fault("lost_create");
        match mode {
            LostMode::Drop => {
                conn.kill();
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
            LostMode::BadGateway => html(StatusCode::BAD_GATEWAY, HTML_502),
        }
    }

    /// Counts the status faults a create just baked into a new object.
    pub fn count_outcome(&self, outcome: &SimStatus) {
        match outcome {
            SimStatus::Failed => self.state().count_fault("fail"),
            SimStatus::Other(_) => self.state().count_fault("unknown_status"),
            SimStatus::InProgress | SimStatus::Completed | SimStatus::Deleting => {}
        }
    }
}
