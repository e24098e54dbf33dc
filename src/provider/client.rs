//! The one type the controller talks to: an account's client, whichever API it speaks.
use std::sync::Arc;

use super::etiquette::{Gate, GateLimits, RequestObserver, RetryPolicy};
use super::{
    Listing, ProviderCapabilities, ProviderConfig, ProviderError, ProviderKind, RemoteBackup,
    RemoteSnapshot, VpsRestClient, ZomroClient,
};

/// One provider account. Cloning is cheap and every clone shares the account's gate (rate,
/// in-flight bound, 429 pause), so all controllers using the account should share one client.
#[derive(Debug, Clone)]
pub enum ProviderClient {
    VpsRest(VpsRestClient),
    Zomro(ZomroClient),
}

impl ProviderClient {
    /// Builds the client; fails when the credentials do not fit the API or the endpoint is not
    /// a usable URL. Makes no request.
    pub fn new(
        kind: ProviderKind,
        config: ProviderConfig,
        observer: Arc<dyn RequestObserver>,
    ) -> Result<Self, ProviderError> {
        let limits = GateLimits {
            requests_per_second: config.requests_per_second,
            burst: config.burst,
            max_in_flight: config.max_in_flight,
        };
        let gate = Arc::new(
            Gate::new(kind.label(), limits, RetryPolicy::default(), observer)
                .with_fence(config.fence.clone()),
        );
        Self::with_gate(kind, &config, gate)
    }

    /// Like [`ProviderClient::new`] with a gate the caller built (own retry policy, or one gate
    /// shared by clients of the same account).
    pub fn with_gate(
        kind: ProviderKind,
        config: &ProviderConfig,
        gate: Arc<Gate>,
    ) -> Result<Self, ProviderError> {
        Ok(match kind {
            ProviderKind::VpsRest => Self::VpsRest(VpsRestClient::new(config, gate)?),
            ProviderKind::Zomro => Self::Zomro(ZomroClient::new(config, gate)?),
        })
    }

    /// The account's gate, e.g. to show a provider-requested pause in status.
    pub fn gate(&self) -> &Arc<Gate> {
        match self {
            Self::VpsRest(c) => c.gate(),
            Self::Zomro(c) => c.gate(),
        }
    }

    pub fn kind(&self) -> ProviderKind {
        match self {
            Self::VpsRest(_) => ProviderKind::VpsRest,
            Self::Zomro(_) => ProviderKind::Zomro,
        }
    }

    /// Bounded label for metrics: `"vps_rest"` or `"zomro"`.
    pub fn provider_label(&self) -> &'static str {
        self.kind().label()
    }

    pub fn capabilities(&self) -> ProviderCapabilities {
        match self {
            Self::VpsRest(c) => c.capabilities(),
            Self::Zomro(c) => c.capabilities(),
        }
    }

    /// A cheap call proving the credentials work and the API answers.
    pub async fn check_credentials(&self) -> Result<(), ProviderError> {
        match self {
            Self::VpsRest(c) => c.check_credentials().await,
            Self::Zomro(c) => c.check_credentials().await,
        }
    }

    /// Every snapshot of the server, the operator's and everyone else's. When `complete` is
    /// false, absence from the list proves nothing.
    pub async fn list_snapshots(
        &self,
        server: u64,
    ) -> Result<Listing<RemoteSnapshot>, ProviderError> {
        match self {
            Self::VpsRest(c) => c.list_snapshots(server).await,
            Self::Zomro(c) => c.list_snapshots(server).await,
        }
    }

    /// Starts a snapshot. `None`: accepted, but the provider gave no object back and it is not
    /// listed yet (Zomro); find it by name later. On an error with `outcome_unknown()`, list by
    /// name before creating again.
    pub async fn create_snapshot(
        &self,
        server: u64,
        name: &str,
        description: Option<&str>,
    ) -> Result<Option<RemoteSnapshot>, ProviderError> {
        match self {
            Self::VpsRest(c) => c.create_snapshot(server, name, description).await.map(Some),
            Self::Zomro(c) => c.create_snapshot(server, name, description).await,
        }
    }

    /// `NotFound` means already gone.
    pub async fn delete_snapshot(&self, server: u64, id: &str) -> Result<(), ProviderError> {
        match self {
            Self::VpsRest(c) => c.delete_snapshot(id).await,
            Self::Zomro(c) => c.delete_snapshot(server, id).await,
        }
    }

    /// Starts a restore (overwrites the server). Any error with `outcome_unknown()` means the
    /// restore may be running: do not call again.
    pub async fn restore_snapshot(&self, server: u64, id: &str) -> Result<(), ProviderError> {
        match self {
            Self::VpsRest(c) => c.restore_snapshot(id).await,
            Self::Zomro(c) => c.restore_snapshot(server, id).await,
        }
    }

    /// Every backup of the server, manual and automatic.
    pub async fn list_backups(&self, server: u64) -> Result<Listing<RemoteBackup>, ProviderError> {
        match self {
            Self::VpsRest(c) => c.list_backups(server, None).await,
            Self::Zomro(c) => c.list_backups(server).await,
        }
    }

    pub async fn create_backup(
        &self,
        server: u64,
        description: Option<&str>,
    ) -> Result<RemoteBackup, ProviderError> {
        match self {
            Self::VpsRest(c) => c.create_backup(server, description).await,
            Self::Zomro(c) => c.create_backup(server, description).await,
        }
    }

    pub async fn delete_backup(&self, server: u64, id: &str) -> Result<(), ProviderError> {
        match self {
            Self::VpsRest(c) => c.delete_backup(id).await,
            Self::Zomro(c) => c.delete_backup(server, id).await,
        }
    }

    pub async fn restore_backup(&self, server: u64, backup_id: &str) -> Result<(), ProviderError> {
        match self {
            Self::VpsRest(c) => c.restore_backup(server, backup_id).await,
            Self::Zomro(c) => c.restore_backup(server, backup_id).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::test_support::{MockServer, reply};
    use crate::provider::{Credentials, NoopObserver, Secret};
    use std::io::Write;
    use std::sync::Mutex;
    use std::time::Duration;

    const TOKEN: &str = "TOKEN-zx81-very-secret";
    const USER: &str = "USER-qq42-login";
    const PASSWORD: &str = "PASSWORD-kk17-hidden";
    const SESSION: &str = "SESSION-ww93-cookie";

    fn config(endpoint: &str, credentials: Credentials) -> ProviderConfig {
        ProviderConfig {
            endpoint: endpoint.into(),
            credentials,
            requests_per_second: 100,
            burst: 100,
            max_in_flight: 4,
            request_timeout: Duration::from_secs(2),
            snapshot_limit: 5,
            backup_limit: 10,
            fence: None,
        }
    }

    fn vps(endpoint: &str) -> ProviderClient {
        let credentials = Credentials::Bearer {
            token: Secret::new(TOKEN),
        };
        ProviderClient::new(
            ProviderKind::VpsRest,
            config(endpoint, credentials),
            Arc::new(NoopObserver),
        )
        .unwrap()
    }

    fn zomro(endpoint: &str, session: bool) -> ProviderClient {
        let credentials = Credentials::Login {
            username: Secret::new(USER),
            password: Secret::new(PASSWORD),
            session,
        };
        ProviderClient::new(
            ProviderKind::Zomro,
            config(endpoint, credentials),
            Arc::new(NoopObserver),
        )
        .unwrap()
    }

    fn assert_clean(what: &str, text: &str) {
        for secret in [TOKEN, USER, PASSWORD, SESSION, "zx81", "kk17", "ww93"] {
            assert!(!text.contains(secret), "{what} leaks {secret}: {text}");
        }
    }

    fn assert_error_clean(err: &ProviderError) {
        assert_clean("Display", &format!("{err}"));
        assert_clean("Debug", &format!("{err:?}"));
    }

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Both clients, driven into every kind of failure with distinctive secrets, while every
    /// log line (ours and our dependencies', down to TRACE) is captured.
    #[tokio::test]
    async fn secrets_never_leak_into_errors_logs_or_debug() {
        let logs = Captured::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        // The test runtime is single-threaded, so the thread-local default sees every event.
        let _guard = tracing::subscriber::set_default(subscriber);

        // A port nobody listens on.
        let closed = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}/", listener.local_addr().unwrap())
        };
        let mut errors = Vec::new();
        errors.push(vps(&closed).list_snapshots(1).await.unwrap_err());
        errors.push(zomro(&closed, true).list_snapshots(1).await.unwrap_err());
        errors.push(zomro(&closed, false).list_snapshots(1).await.unwrap_err());

        // Each provider echoing its own credentials back in its error texts.
        let echo = format!("token {TOKEN}");
        let server = MockServer::start(vec![
            reply(401, format!(r#"{{"detail": "{echo}"}}"#)),
            reply(400, format!(r#"{{"detail": "{echo}"}}"#)),
            reply(403, echo.clone()),
            reply(400, echo.clone()),
            reply(
                200,
                format!(r#"{{"count": 1, "results": [{{"id": "{TOKEN}"}}]}}"#),
            ),
        ])
        .await;
        let client = vps(&server.url);
        errors.push(client.check_credentials().await.unwrap_err());
        errors.push(client.restore_snapshot(1, "801").await.unwrap_err());
        errors.push(client.delete_backup(1, "3").await.unwrap_err());
        // The 400 makes it re-list, and the list quotes the token in a wrongly typed id.
        errors.push(client.create_snapshot(1, "n", None).await.unwrap_err());
        assert_clean("Debug of the client", &format!("{client:?}"));
        assert_eq!(
            server.received()[0].headers["authorization"],
            format!("Bearer {TOKEN}").as_str()
        );

        let echo =
            format!("user {USER} password {PASSWORD} both {USER}:{PASSWORD} session {SESSION}");
        let login = format!(r#"{{"doc": {{"auth": {{"$id": "{SESSION}"}}}}}}"#);
        let error = |kind: &str| {
            format!(r#"{{"doc": {{"error": {{"$type": "{kind}", "msg": {{"$": "{echo}"}}}}}}}}"#)
        };
        // Before a login succeeds there is no session the provider could echo.
        let before_login = format!(
            r#"{{"doc": {{"error": {{"$type": "auth", "msg": {{"$": "{USER} {PASSWORD}"}}}}}}}}"#
        );
        let server = MockServer::start(vec![
            reply(200, before_login),
            reply(200, login.clone()),
            reply(200, error("value")),
            reply(200, r#"{"doc": {"elem": []}}"#),
            reply(200, error("access")),
            reply(200, login.clone()),
            reply(500, format!("<html>{echo}</html>")),
            reply(200, format!(r#"{{"doc": {{"elem": {{"id": {{"$": "1"}}, "name": {{"$": "a"}}, "createdate": {{"$": "{SESSION}"}}}}}}}}"#)),
            // The authinfo client never holds a session.
            reply(
                200,
                format!(r#"{{"doc": {{"error": {{"$type": "missed", "msg": {{"$": "{USER}:{PASSWORD}"}}}}}}}}"#),
            ),
        ])
        .await;
        let client = zomro(&server.url, true);
        errors.push(client.check_credentials().await.unwrap_err());
        errors.push(client.create_snapshot(1, "n", None).await.unwrap_err());
        // access → fresh login → 500 → retried (a list is idempotent) → unreadable date.
        errors.push(client.list_snapshots(1).await.unwrap_err());
        assert_clean("Debug of the client", &format!("{client:?}"));
        let authinfo = zomro(&server.url, false);
        errors.push(authinfo.list_snapshots(1).await.unwrap_err());
        assert_clean("Debug of the client", &format!("{authinfo:?}"));
        assert_eq!(
            server.received().last().unwrap().field("authinfo"),
            Some(format!("{USER}:{PASSWORD}"))
        );

        for err in &errors {
            assert_error_clean(err);
        }
        let classes: Vec<_> = errors.iter().map(ProviderError::class).collect();
        assert_eq!(
            classes,
            [
                "Transient",
                "Transient",
                "Transient",
                "Auth",
                "InvalidState",
                "Auth",
                "Protocol",
                "Auth",
                "InvalidRequest",
                "Protocol",
                "NotFound",
            ]
        );

        let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        assert!(
            !logs.is_empty(),
            "nothing was logged, so the check would prove nothing"
        );
        assert_clean("logs", &logs);
    }

    #[test]
    fn credentials_must_fit_the_api() {
        let bearer = Credentials::Bearer {
            token: Secret::new(TOKEN),
        };
        let login = Credentials::Login {
            username: Secret::new(USER),
            password: Secret::new(PASSWORD),
            session: true,
        };
        let observer: Arc<dyn RequestObserver> = Arc::new(NoopObserver);
        let wrong = [
            ProviderClient::new(
                ProviderKind::VpsRest,
                config("https://admin.vps.org/api/v1/", login),
                observer.clone(),
            ),
            ProviderClient::new(
                ProviderKind::Zomro,
                config("https://api.zomro.com/", bearer),
                observer.clone(),
            ),
        ];
        for result in wrong {
            let err = result.unwrap_err();
            assert!(matches!(err, ProviderError::Auth(_)));
            assert_error_clean(&err);
        }
    }

    #[test]
    fn labels_and_capabilities() {
        let v = vps("https://admin.vps.org/api/v1/");
        let z = zomro("https://api.zomro.com/", true);
        assert_eq!(
            (v.provider_label(), z.provider_label()),
            ("vps_rest", "zomro")
        );
        assert_eq!(
            (v.kind(), z.kind()),
            (ProviderKind::VpsRest, ProviderKind::Zomro)
        );
        assert!(v.capabilities().backups && v.capabilities().snapshot_restore);
        assert!(!z.capabilities().backups && !z.capabilities().backup_restore);
    }

    #[test]
    fn clones_share_the_gate() {
        let v = vps("https://admin.vps.org/api/v1/");
        let copy = v.clone();
        let (ProviderClient::VpsRest(a), ProviderClient::VpsRest(b)) = (&v, &copy) else {
            panic!("kind changed on clone");
        };
        assert!(Arc::ptr_eq(a.gate(), b.gate()));
        assert!(Arc::ptr_eq(v.gate(), copy.gate()));
    }
}

/// The lease fence checked where a change leaves the process, not only at the gate: a process
/// stopped between the two (a stop signal, a VM pause) and thawed after a standby took over must
/// send nothing (src/controller/fencing.rs, "Honest limit").
#[cfg(test)]
mod fence_at_the_socket {
    use super::*;
    use crate::provider::{Credentials, Fence, NoopObserver, Secret};
    use crate::sim::{SimConfig, SimHandle};
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    /// Admits reads always and a change exactly once: the gate's own check of the first attempt.
    /// Every later check of a change is refused, as after a freeze that outlived the lease.
    #[derive(Debug, Default)]
    struct ClosesBehindTheGate {
        changes_admitted: AtomicU32,
    }

    impl Fence for ClosesBehindTheGate {
        fn admit(&self, mutation: bool) -> Result<(), String> {
            if !mutation || self.changes_admitted.fetch_add(1, Ordering::SeqCst) == 0 {
                Ok(())
            } else {
                Err("the leader lease was lost while this change waited".into())
            }
        }
    }

    async fn sim() -> SimHandle {
        crate::sim::start(
            SimConfig {
                create_delay: Duration::ZERO,
                ..SimConfig::default()
            },
            "127.0.0.1:0".parse().unwrap(),
        )
        .await
        .unwrap()
    }

    fn client(
        sim: &SimHandle,
        kind: ProviderKind,
        fence: Option<Arc<dyn Fence>>,
    ) -> ProviderClient {
        let (endpoint, credentials) = match kind {
            ProviderKind::VpsRest => (
                sim.vps_rest_url(),
                Credentials::Bearer {
                    token: Secret::new("sim-token"),
                },
            ),
            ProviderKind::Zomro => (
                sim.zomro_url(),
                Credentials::Login {
                    username: Secret::new("sim"),
                    password: Secret::new("sim-password"),
                    session: false,
                },
            ),
        };
        let config = ProviderConfig {
            endpoint,
            credentials,
            requests_per_second: 100,
            burst: 100,
            max_in_flight: 4,
            request_timeout: Duration::from_secs(10),
            snapshot_limit: 5,
            backup_limit: 10,
            fence,
        };
        ProviderClient::new(kind, config, Arc::new(NoopObserver)).unwrap()
    }

    fn closing() -> Option<Arc<dyn Fence>> {
        Some(Arc::new(ClosesBehindTheGate::default()))
    }

    /// Endpoints the simulator logged from number `since` on.
    fn logged(sim: &SimHandle, since: u64) -> Vec<String> {
        sim.call_log(since)
            .into_iter()
            .map(|c| c.endpoint)
            .collect()
    }

    fn assert_not_sent<T: std::fmt::Debug>(result: Result<T, ProviderError>, what: &str) {
        match result {
            Err(ProviderError::Fenced(why)) => {
                assert!(
                    why.contains("lease") && why.contains("written"),
                    "{what}: {why}"
                )
            }
            other => panic!("{what}: expected Fenced, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn vps_rest_changes_that_passed_the_gate_are_not_sent_once_the_fence_closed() {
        let sim = sim().await;
        let open = client(&sim, ProviderKind::VpsRest, None);
        let made = open
            .create_snapshot(12345, "kept", None)
            .await
            .unwrap()
            .expect("VpsRest answers the snapshot");
        let backup = open.create_backup(12345, None).await.unwrap();
        let since = sim.call_log(0).len() as u64;

        let c = client(&sim, ProviderKind::VpsRest, closing());
        assert_not_sent(
            c.create_snapshot(12345, "late", None).await,
            "create snapshot",
        );
        let c = client(&sim, ProviderKind::VpsRest, closing());
        assert_not_sent(c.create_backup(12345, None).await, "create backup");
        let c = client(&sim, ProviderKind::VpsRest, closing());
        assert_not_sent(c.delete_snapshot(12345, &made.id).await, "delete snapshot");
        let c = client(&sim, ProviderKind::VpsRest, closing());
        assert_not_sent(c.restore_backup(12345, &backup.id).await, "restore backup");

        assert_eq!(
            logged(&sim, since),
            Vec::<String>::new(),
            "nothing reached the provider"
        );
        assert!(sim.snapshots(12345).iter().any(|s| s.name == "kept"));
        assert!(!sim.snapshots(12345).iter().any(|s| s.name == "late"));
        // Reads still pass a fence that refuses only changes.
        let c = client(&sim, ProviderKind::VpsRest, closing());
        assert!(c.list_snapshots(12345).await.unwrap().complete);
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn zomro_changes_that_passed_the_gate_are_not_sent_once_the_fence_closed() {
        let sim = sim().await;
        let since = sim.call_log(0).len() as u64;
        let c = client(&sim, ProviderKind::Zomro, closing());
        assert_not_sent(
            c.create_snapshot(12345, "late", None).await,
            "create snapshot",
        );
        assert_eq!(
            logged(&sim, since),
            Vec::<String>::new(),
            "nothing reached the provider"
        );
        assert!(sim.snapshots(12345).is_empty());
        sim.shutdown().await;
    }
}
