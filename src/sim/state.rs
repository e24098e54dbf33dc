//! The in-memory provider: servers, snapshots, backups, sessions, counters and history.
//!
//! Pure bookkeeping with no HTTP in sight; both API façades and the inspection endpoints go
//! through it under one short-held lock. Statuses are not advanced by background tasks: each
//! object carries the instant it finishes and its final status, and views are computed from
//! the current time, which keeps the simulator free of timers.

use super::config::SimConfig;
use super::model::{
    BackupType, CreateRecord, DeleteRecord, ObjectKind, Record, RestoreRecord, SimApi, SimBackup,
    SimServer, SimSnapshot, SimStatus,
};
use jiff::{SignedDuration, Timestamp, ToSpan, tz::TimeZone};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use tokio::time::Instant;

pub const FIRST_SNAPSHOT_ID: u64 = 801;
pub const FIRST_BACKUP_ID: u64 = 501;
/// Keeps the content RNG's stream unrelated to the fault RNG's for the same seed.
const CONTENT_SALT: u64 = 0x9e37_79b9_7f4a_7c15;

pub fn server_name(id: u64) -> String {
    format!("server-{id}")
}

/// The provider's clock, truncated to whole seconds as the documented examples are.
fn now_ts() -> Timestamp {
    let now = Timestamp::now();
    Timestamp::from_second(now.as_second()).unwrap_or(now)
}

struct Server {
    restoring_until: Option<Instant>,
}

impl Server {
    fn status(&self, now: Instant) -> &'static str {
        match self.restoring_until {
            Some(until) if now < until => "restoring",
            _ => "running",
        }
    }
}

struct Snapshot {
    id: u64,
    server: u64,
    name: String,
    description: Option<String>,
    created_at: Timestamp,
    ready_at: Instant,
    outcome: SimStatus,
    size_mb: u64,
    protected: bool,
    foreign: bool,
    created_via: SimApi,
}

impl Snapshot {
    fn view(&self, now: Instant) -> SimSnapshot {
        let status = if now >= self.ready_at {
            self.outcome.clone()
        } else {
            SimStatus::InProgress
        };
        SimSnapshot {
            id: self.id,
            server: self.server,
            name: self.name.clone(),
            description: self.description.clone(),
            size_mb: (status == SimStatus::Completed).then_some(self.size_mb),
            status,
            created_at: self.created_at,
            protected: self.protected,
            foreign: self.foreign,
            created_via: self.created_via,
        }
    }
}

struct Backup {
    id: u64,
    server: u64,
    backup_type: BackupType,
    description: Option<String>,
    created_at: Timestamp,
    expires_at: Option<Timestamp>,
    ready_at: Instant,
    outcome: SimStatus,
    size_mb: u64,
    foreign: bool,
    created_via: SimApi,
}

impl Backup {
    fn view(&self, now: Instant) -> SimBackup {
        let status = if now >= self.ready_at {
            self.outcome.clone()
        } else {
            SimStatus::InProgress
        };
        SimBackup {
            id: self.id,
            server: self.server,
            backup_type: self.backup_type,
            description: self.description.clone(),
            size_mb: (status == SimStatus::Completed).then_some(self.size_mb),
            status,
            created_at: self.created_at,
            expires_at: self.expires_at,
            foreign: self.foreign,
            created_via: self.created_via,
        }
    }
}

struct Session {
    last_used: Instant,
}

pub struct NewSnapshot {
    pub server: u64,
    pub name: String,
    pub description: Option<String>,
    /// Status once `ready_after` has elapsed.
    pub outcome: SimStatus,
    pub ready_after: Duration,
    pub protected: bool,
    pub api: SimApi,
    pub response_lost: bool,
    /// `None` bypasses the limit (foreign objects are made by someone else).
    pub limit: Option<usize>,
}

pub struct NewBackup {
    pub server: u64,
    pub backup_type: BackupType,
    pub description: Option<String>,
    pub outcome: SimStatus,
    pub ready_after: Duration,
    pub api: SimApi,
    pub response_lost: bool,
    pub limit: Option<usize>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum CreateError {
    NoServer,
    Limit(usize),
}

#[derive(Debug, PartialEq, Eq)]
pub enum RestoreError {
    /// 404: what does not exist.
    NotFound(&'static str),
    /// 400: why the restore cannot start.
    Invalid(String),
}

pub enum DeleteOutcome<T> {
    Deleted(T),
    NotFound,
    Protected(T),
}

pub struct State {
    config: SimConfig,
    servers: BTreeMap<u64, Server>,
    snapshots: Vec<Snapshot>,
    backups: Vec<Backup>,
    sessions: HashMap<String, Session>,
    next_snapshot_id: u64,
    next_backup_id: u64,
    seq: u64,
    record: Record,
    calls: BTreeMap<String, u64>,
    faults_injected: BTreeMap<String, u64>,
    rng: StdRng,
}

impl State {
    pub fn new(config: SimConfig) -> Self {
        let rng = StdRng::seed_from_u64(config.seed ^ CONTENT_SALT);
        let mut state = Self {
            servers: BTreeMap::new(),
            snapshots: Vec::new(),
            backups: Vec::new(),
            sessions: HashMap::new(),
            next_snapshot_id: FIRST_SNAPSHOT_ID,
            next_backup_id: FIRST_BACKUP_ID,
            seq: 0,
            record: Record::default(),
            calls: BTreeMap::new(),
            faults_injected: BTreeMap::new(),
            rng,
            config,
        };
        let ids = state.config.servers.clone();
        for id in ids {
            state.ensure_server(id);
        }
        state.seed_auto_backups();
        state
    }

    /// Automatic backups made by the provider in the past, one a day, oldest first.
    fn seed_auto_backups(&mut self) {
        let n = self.config.auto_backups;
        if n == 0 {
            return;
        }
        let now = now_ts();
        let servers: Vec<u64> = self.servers.keys().copied().collect();
        for server in servers {
            for i in 0..n {
                let days_ago = i64::try_from(n - i).unwrap_or(i64::MAX);
                let created_at = now
                    .checked_sub(SignedDuration::from_hours(24 * days_ago))
                    .unwrap_or(now);
                let expires_at = created_at
                    .to_zoned(TimeZone::UTC)
                    .checked_add(1.month())
                    .map(|z| z.timestamp())
                    .ok();
                self.insert_backup(
                    NewBackup {
                        server,
                        backup_type: BackupType::Automatic,
                        description: Some("Automatic daily backup".into()),
                        outcome: SimStatus::Completed,
                        ready_after: Duration::ZERO,
                        api: SimApi::Seed,
                        response_lost: false,
                        limit: None,
                    },
                    created_at,
                    expires_at,
                );
            }
        }
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    pub fn count_call(&mut self, key: &str) {
        *self.calls.entry(key.to_string()).or_default() += 1;
    }

    pub fn count_fault(&mut self, kind: &str) {
        *self.faults_injected.entry(kind.to_string()).or_default() += 1;
    }

    pub fn calls(&self) -> BTreeMap<String, u64> {
        self.calls.clone()
    }

    pub fn faults_injected(&self) -> BTreeMap<String, u64> {
        self.faults_injected.clone()
    }

    pub fn record(&self) -> Record {
        self.record.clone()
    }

    // ---- servers -------------------------------------------------------------------------

    pub fn has_server(&self, id: u64) -> bool {
        self.servers.contains_key(&id)
    }

    pub fn ensure_server(&mut self, id: u64) {
        self.servers.entry(id).or_insert(Server {
            restoring_until: None,
        });
        self.record.servers.entry(id).or_default();
    }

    pub fn server(&self, id: u64) -> Option<SimServer> {
        let now = Instant::now();
        self.servers.get(&id).map(|s| SimServer {
            id,
            name: server_name(id),
            status: s.status(now).into(),
        })
    }

    pub fn servers(&self) -> Vec<SimServer> {
        self.servers
            .keys()
            .filter_map(|id| self.server(*id))
            .collect()
    }

    fn start_restore(&mut self, server: u64) -> Result<(), String> {
        let now = Instant::now();
        let delay = self.config.restore_delay;
        let Some(s) = self.servers.get_mut(&server) else {
            return Err("server does not exist".into());
        };
        if s.status(now) == "restoring" {
            return Err(
                "Server is not in a valid state for restoration: a restore is already in progress."
                    .into(),
            );
        }
        s.restoring_until = Some(now + delay);
        Ok(())
    }

    fn record_restore(
        &mut self,
        kind: ObjectKind,
        server: Option<u64>,
        object_id: u64,
        result: &Result<(), String>,
    ) {
        let seq = self.next_seq();
        self.record.restores.push(RestoreRecord {
            seq,
            at: Timestamp::now(),
            kind,
            server,
            object_id,
            accepted: result.is_ok(),
            reason: result.as_ref().err().cloned().unwrap_or_default(),
        });
    }

    // ---- snapshots -----------------------------------------------------------------------

    pub fn snapshot_count(&self, server: u64) -> usize {
        self.snapshots.iter().filter(|s| s.server == server).count()
    }

    pub fn create_snapshot(&mut self, new: NewSnapshot) -> Result<SimSnapshot, CreateError> {
        if !self.has_server(new.server) {
            return Err(CreateError::NoServer);
        }
        if let Some(limit) = new.limit
            && self.snapshot_count(new.server) >= limit
        {
            self.record
                .servers
                .entry(new.server)
                .or_default()
                .snapshot_limit_rejections += 1;
            return Err(CreateError::Limit(limit));
        }
        Ok(self.insert_snapshot(new))
    }

    /// Adds a snapshot without any check; the server must exist (see [`Self::ensure_server`]).
    pub fn insert_snapshot(&mut self, new: NewSnapshot) -> SimSnapshot {
        let id = self.next_snapshot_id;
        self.next_snapshot_id += 1;
        let size_mb = self.rng.random_range(512..=20_480);
        let now = Instant::now();
        let snapshot = Snapshot {
            id,
            server: new.server,
            name: new.name,
            description: new.description,
            created_at: now_ts(),
            ready_at: now + new.ready_after,
            outcome: new.outcome,
            size_mb,
            protected: new.protected,
            foreign: matches!(new.api, SimApi::Inspect | SimApi::Seed),
            created_via: new.api,
        };
        let view = snapshot.view(now);
        self.snapshots.push(snapshot);
        let seq = self.next_seq();
        self.record.creates.push(CreateRecord {
            seq,
            at: Timestamp::now(),
            api: new.api,
            kind: ObjectKind::Snapshot,
            server: view.server,
            id,
            name: Some(view.name.clone()),
            description: view.description.clone(),
            response_lost: new.response_lost,
            foreign: view.foreign,
        });
        let count = self.snapshot_count(view.server);
        let hw = &mut self
            .record
            .servers
            .entry(view.server)
            .or_default()
            .snapshots_high_water;
        *hw = (*hw).max(count);
        view
    }

    /// Creation order, or shuffled (content RNG) when `shuffle`.
    pub fn snapshots(&mut self, server: Option<u64>, shuffle: bool) -> Vec<SimSnapshot> {
        let now = Instant::now();
        let mut list: Vec<SimSnapshot> = self
            .snapshots
            .iter()
            .filter(|s| server.is_none_or(|id| s.server == id))
            .map(|s| s.view(now))
            .collect();
        if shuffle {
            list.shuffle(&mut self.rng);
        }
        list
    }

    pub fn snapshot(&self, id: u64) -> Option<SimSnapshot> {
        let now = Instant::now();
        self.snapshots
            .iter()
            .find(|s| s.id == id)
            .map(|s| s.view(now))
    }

    /// Deletes snapshot `id`; `server` (Zomro's `plid`) must match when given.
    pub fn delete_snapshot(
        &mut self,
        id: u64,
        server: Option<u64>,
        api: SimApi,
        honour_protected: bool,
    ) -> DeleteOutcome<SimSnapshot> {
        let Some(pos) = self
            .snapshots
            .iter()
            .position(|s| s.id == id && server.is_none_or(|srv| s.server == srv))
        else {
            return DeleteOutcome::NotFound;
        };
        let view = self.snapshots[pos].view(Instant::now());
        let seq = self.next_seq();
        let entry = DeleteRecord {
            seq,
            at: Timestamp::now(),
            api,
            kind: ObjectKind::Snapshot,
            server: view.server,
            id,
            name: Some(view.name.clone()),
            description: view.description.clone(),
            foreign: view.foreign,
            backup_type: None,
        };
        if honour_protected && view.protected {
            self.record.refused_deletes.push(entry);
            return DeleteOutcome::Protected(view);
        }
        self.snapshots.remove(pos);
        self.record.deletes.push(entry);
        DeleteOutcome::Deleted(view)
    }

    pub fn restore_snapshot(&mut self, id: u64) -> Result<SimSnapshot, RestoreError> {
        let Some(snapshot) = self.snapshot(id) else {
            self.record_restore(
                ObjectKind::Snapshot,
                None,
                id,
                &Err("snapshot does not exist".into()),
            );
            return Err(RestoreError::NotFound("snapshot"));
        };
        let result = if snapshot.status == SimStatus::Completed {
            self.start_restore(snapshot.server)
        } else {
            Err(format!(
                "Snapshot is not available for restoration (status: {}).",
                snapshot.status.vps_rest()
            ))
        };
        self.record_restore(ObjectKind::Snapshot, Some(snapshot.server), id, &result);
        result.map(|()| snapshot).map_err(RestoreError::Invalid)
    }

    // ---- backups -------------------------------------------------------------------------

    pub fn backup_count(&self, server: u64) -> usize {
        self.backups.iter().filter(|b| b.server == server).count()
    }

    pub fn create_backup(&mut self, new: NewBackup) -> Result<SimBackup, CreateError> {
        if !self.has_server(new.server) {
            return Err(CreateError::NoServer);
        }
        if let Some(limit) = new.limit
            && self.backup_count(new.server) >= limit
        {
            self.record
                .servers
                .entry(new.server)
                .or_default()
                .backup_limit_rejections += 1;
            return Err(CreateError::Limit(limit));
        }
        Ok(self.add_backup(new))
    }

    /// Adds a backup created now without any check; the server must exist.
    pub fn add_backup(&mut self, new: NewBackup) -> SimBackup {
        let created_at = now_ts();
        let expires_at = match new.backup_type {
            BackupType::Manual => None,
            BackupType::Automatic => created_at
                .to_zoned(TimeZone::UTC)
                .checked_add(1.month())
                .map(|z| z.timestamp())
                .ok(),
        };
        self.insert_backup(new, created_at, expires_at)
    }

    fn insert_backup(
        &mut self,
        new: NewBackup,
        created_at: Timestamp,
        expires_at: Option<Timestamp>,
    ) -> SimBackup {
        let id = self.next_backup_id;
        self.next_backup_id += 1;
        let size_mb = self.rng.random_range(1_024..=40_960);
        let now = Instant::now();
        let backup = Backup {
            id,
            server: new.server,
            backup_type: new.backup_type,
            description: new.description,
            created_at,
            expires_at,
            ready_at: now + new.ready_after,
            outcome: new.outcome,
            size_mb,
            foreign: matches!(new.api, SimApi::Inspect | SimApi::Seed),
            created_via: new.api,
        };
        let view = backup.view(now);
        self.backups.push(backup);
        let seq = self.next_seq();
        self.record.creates.push(CreateRecord {
            seq,
            at: Timestamp::now(),
            api: new.api,
            kind: ObjectKind::Backup,
            server: view.server,
            id,
            name: None,
            description: view.description.clone(),
            response_lost: new.response_lost,
            foreign: view.foreign,
        });
        let count = self.backup_count(view.server);
        let hw = &mut self
            .record
            .servers
            .entry(view.server)
            .or_default()
            .backups_high_water;
        *hw = (*hw).max(count);
        view
    }

    pub fn backups(
        &mut self,
        server: Option<u64>,
        backup_type: Option<BackupType>,
        shuffle: bool,
    ) -> Vec<SimBackup> {
        let now = Instant::now();
        let mut list: Vec<SimBackup> = self
            .backups
            .iter()
            .filter(|b| server.is_none_or(|id| b.server == id))
            .filter(|b| backup_type.is_none_or(|t| b.backup_type == t))
            .map(|b| b.view(now))
            .collect();
        if shuffle {
            list.shuffle(&mut self.rng);
        }
        list
    }

    pub fn delete_backup(&mut self, id: u64, api: SimApi) -> DeleteOutcome<SimBackup> {
        let Some(pos) = self.backups.iter().position(|b| b.id == id) else {
            return DeleteOutcome::NotFound;
        };
        let view = self.backups.remove(pos).view(Instant::now());
        let seq = self.next_seq();
        self.record.deletes.push(DeleteRecord {
            seq,
            at: Timestamp::now(),
            api,
            kind: ObjectKind::Backup,
            server: view.server,
            id,
            name: None,
            description: view.description.clone(),
            foreign: view.foreign,
            backup_type: Some(view.backup_type),
        });
        DeleteOutcome::Deleted(view)
    }

    pub fn restore_backup(
        &mut self,
        server: u64,
        backup_id: u64,
    ) -> Result<SimBackup, RestoreError> {
        let now = Instant::now();
        let backup = self
            .backups
            .iter()
            .find(|b| b.id == backup_id)
            .map(|b| b.view(now));
        let result = match &backup {
            None => Err(RestoreError::NotFound("backup")),
            Some(b) if b.server != server => Err(RestoreError::Invalid(format!(
                "Backup {backup_id} does not belong to server {server}."
            ))),
            Some(b) if b.status != SimStatus::Completed => Err(RestoreError::Invalid(format!(
                "Backup is not available for restoration (status: {}).",
                b.status.vps_rest()
            ))),
            Some(_) => self.start_restore(server).map_err(RestoreError::Invalid),
        };
        let for_record = match &result {
            Ok(()) => Ok(()),
            Err(RestoreError::NotFound(what)) => Err(format!("{what} does not exist")),
            Err(RestoreError::Invalid(why)) => Err(why.clone()),
        };
        self.record_restore(ObjectKind::Backup, Some(server), backup_id, &for_record);
        result.and_then(|()| backup.ok_or(RestoreError::NotFound("backup")))
    }

    // ---- Zomro sessions ------------------------------------------------------------------

    pub fn credentials_ok(&self, login: &str, password: &str) -> bool {
        self.config
            .zomro_users
            .iter()
            .any(|(l, p)| l == login && p == password)
    }

    pub fn login(&mut self, login: &str, password: &str) -> Option<String> {
        if !self.credentials_ok(login, password) {
            return None;
        }
        let id = format!(
            "{:016x}{:016x}",
            self.rng.random::<u64>(),
            self.rng.random::<u64>()
        );
        self.sessions.insert(
            id.clone(),
            Session {
                last_used: Instant::now(),
            },
        );
        Some(id)
    }

    /// True and refreshed if the session is known and not idle for longer than allowed.
    pub fn touch_session(&mut self, id: &str) -> bool {
        let now = Instant::now();
        let idle = self.config.session_idle;
        match self.sessions.get_mut(id) {
            Some(s) if now.duration_since(s.last_used) <= idle => {
                s.last_used = now;
                true
            }
            Some(_) => {
                self.sessions.remove(id);
                false
            }
            None => false,
        }
    }

    pub fn live_sessions(&self) -> usize {
        let now = Instant::now();
        let idle = self.config.session_idle;
        self.sessions
            .values()
            .filter(|s| now.duration_since(s.last_used) <= idle)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> SimConfig {
        SimConfig {
            servers: vec![1, 2],
            create_delay: Duration::ZERO,
            auto_backups: 3,
            ..SimConfig::default()
        }
    }

    fn new_snapshot(server: u64, name: &str, limit: Option<usize>) -> NewSnapshot {
        NewSnapshot {
            server,
            name: name.into(),
            description: None,
            outcome: SimStatus::Completed,
            ready_after: Duration::ZERO,
            protected: false,
            api: SimApi::VpsRest,
            response_lost: false,
            limit,
        }
    }

    #[test]
    fn auto_backups_are_seeded_oldest_first_and_expire_a_month_later() {
        let mut state = State::new(config());
        let list = state.backups(Some(1), None, false);
        assert_eq!(list.len(), 3);
        assert!(list.windows(2).all(|w| w[0].created_at < w[1].created_at));
        for b in &list {
            assert_eq!(b.backup_type, BackupType::Automatic);
            let expires = b.expires_at.expect("automatic backups expire");
            let days = (expires - b.created_at).get_seconds() / 86_400;
            assert!((28..=31).contains(&days), "{days}");
        }
        assert_eq!(state.record().servers[&1].backups_high_water, 3);
    }

    #[test]
    fn limit_counts_everything_and_records_rejections() {
        let mut state = State::new(config());
        for i in 0..5 {
            state
                .create_snapshot(new_snapshot(1, &format!("s{i}"), Some(5)))
                .expect("under the limit");
        }
        assert_eq!(
            state.create_snapshot(new_snapshot(1, "s5", Some(5))),
            Err(CreateError::Limit(5))
        );
        // Foreign objects ignore the limit but still raise the high-water mark.
        state
            .create_snapshot(new_snapshot(1, "foreign", None))
            .expect("foreign bypasses the limit");
        let rec = state.record();
        assert_eq!(rec.servers[&1].snapshot_limit_rejections, 1);
        assert_eq!(rec.servers[&1].snapshots_high_water, 6);
        assert_eq!(
            state.create_snapshot(new_snapshot(99, "x", Some(5))),
            Err(CreateError::NoServer)
        );
    }

    #[test]
    fn sessions_lapse_after_idle_time() {
        let mut state = State::new(SimConfig {
            session_idle: Duration::ZERO,
            ..config()
        });
        assert!(state.login("sim", "wrong").is_none());
        let id = state.login("sim", "sim-password").expect("login");
        std::thread::sleep(Duration::from_millis(5));
        assert!(!state.touch_session(&id));
        assert_eq!(state.live_sessions(), 0);
    }
}
