//! Start-time configuration of the simulator.

use super::faults::Faults;
use std::time::Duration;

/// Everything fixed at start; only `faults` can change later (`SimHandle::set_faults`,
/// `PUT /_sim/faults`).
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Server (Zomro: instance) ids; names are `server-<id>`.
    pub servers: Vec<u64>,
    /// Accepted VpsRest bearer tokens.
    pub tokens: Vec<String>,
    /// Zomro `(login, password)` pairs, for `func=auth` and `authinfo=login:password`.
    pub zomro_users: Vec<(String, String)>,
    /// Time from create to `completed` / `Active` (or to the faulted final status).
    pub create_delay: Duration,
    /// Time a server stays `restoring` after an accepted restore.
    pub restore_delay: Duration,
    /// VpsRest snapshots per server, counting every listed snapshot whatever its status.
    pub snapshot_limit: usize,
    /// VpsRest backups per server, manual and automatic together.
    pub backup_limit: usize,
    /// Zomro snapshots per instance (a total, not per day).
    pub zomro_snapshot_limit: usize,
    /// Automatic backups seeded per server at start.
    pub auto_backups: usize,
    /// A Zomro session lapses this long after its last request.
    pub session_idle: Duration,
    /// Seeds both the fault RNG and the content RNG (sizes, uuids, session ids, shuffles).
    pub seed: u64,
    pub faults: Faults,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            servers: vec![12345],
            tokens: vec!["sim-token".into()],
            zomro_users: vec![("sim".into(), "sim-password".into())],
            create_delay: Duration::from_secs(2),
            restore_delay: Duration::from_secs(5),
            snapshot_limit: 5,
            backup_limit: 10,
            zomro_snapshot_limit: 5,
            auto_backups: 0,
            session_idle: Duration::from_secs(3600),
            seed: 0,
            faults: Faults::default(),
        }
    }
}
