//! The in-memory provider: servers, snapshots, backups, sessions, counters and history.
//!
//! Pure bookkeeping with no HTTP in sight; both API façades and the inspection endpoints go
//! through it under one short-held lock. Statuses are not advanced by background tasks: each
//! object carries the instant it finishes and its final status, and views are computed from
//! the current time, which keeps the simulator free of timers. Likewise a deleted object that
//! lingers carries the instant it vanishes, and a new one the instant it was made (lists hide
//! it for `visibility_delay`); vanished objects are dropped lazily.

use super::config::SimConfig;
use super::model::{
    BackupType, CallRecord, Caller, CreateRecord, DeleteRecord, ObjectKind, Record, RefusedCreate,
    RestoreRecord, SimApi, SimBackup, SimServer, SimSnapshot, SimStatus,
};
use jiff::{SignedDuration, Timestamp, ToSpan, tz::TimeZone};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

pub const FIRST_SNAPSHOT_ID: u64 = 801;
pub const FIRST_BACKUP_ID: u64 = 501;
/// Keeps the content RNG's stream unrelated to the fault RNG's for the same seed.
const CONTENT_SALT: u64 = 0x9e37_79b9_7f4a_7c15;

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

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
    life: Life,
    outcome: SimStatus,
    size_mb: u64,
    protected: bool,
    foreign: bool,
    created_via: SimApi,
}

/// The instants that drive an object's status, list visibility and existence.
#[derive(Clone, Copy)]
struct Life {
    born: Instant,
    ready_at: Instant,
    /// Set once a delete is accepted: the object vanishes at that instant.
    gone_at: Option<Instant>,
}

impl Life {
    fn new(now: Instant, ready_after: Duration) -> Self {
        Self {
            born: now,
            ready_at: now + ready_after,
            gone_at: None,
        }
    }

    /// Still held by the provider (deleting ones included).
    fn present(&self, now: Instant) -> bool {
        self.gone_at.is_none_or(|g| now < g)
    }

    /// Shown by API lists made at `now` when new objects stay hidden for `delay`.
    fn listed(&self, now: Instant, delay: Duration) -> bool {
        self.present(now) && now.duration_since(self.born) >= delay
    }

    fn status(&self, now: Instant, outcome: &SimStatus) -> SimStatus {
        if self.gone_at.is_some() {
            SimStatus::Deleting
        } else if now >= self.ready_at {
            outcome.clone()
        } else {
            SimStatus::InProgress
        }
    }
}

/// How an API list is shaped (inspection views take every present object, in order).
#[derive(Clone, Copy, Debug, Default)]
pub struct ListView {
    pub shuffle: bool,
    /// Objects younger than this are not listed yet.
    pub hide_younger_than: Duration,
}

impl Snapshot {
    fn view(&self, now: Instant) -> SimSnapshot {
        let status = self.life.status(now, &self.outcome);
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
    life: Life,
    outcome: SimStatus,
    size_mb: u64,
    foreign: bool,
    created_via: SimApi,
}

impl Backup {
    fn view(&self, now: Instant) -> SimBackup {
        let status = self.life.status(now, &self.outcome);
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
    /// As stored (already truncated when the provider truncates).
    pub description: Option<String>,
    /// As sent, when it differs from `description`.
    pub requested_description: Option<String>,
    /// Status once `ready_after` has elapsed.
    pub outcome: SimStatus,
    pub ready_after: Duration,
    pub protected: bool,
    pub api: SimApi,
    pub response_lost: bool,
    pub answer_held: Option<Duration>,
    /// `None` bypasses the limit (foreign objects are made by someone else).
    pub limit: Option<usize>,
    pub caller: Caller,
}

pub struct NewBackup {
    pub server: u64,
    pub backup_type: BackupType,
    pub description: Option<String>,
    pub requested_description: Option<String>,
    pub outcome: SimStatus,
    pub ready_after: Duration,
    pub api: SimApi,
    pub response_lost: bool,
    pub answer_held: Option<Duration>,
    pub limit: Option<usize>,
    pub caller: Caller,
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
    /// Accepted now: gone, or listed as deleting until it vanishes.
    Deleted(T),
    /// A delete was accepted earlier and the object is still on its way out.
    AlreadyDeleting(T),
    NotFound,
    Protected(T),
}

/// One accepted delete request.
pub struct DeleteRequest {
    pub api: SimApi,
    /// How long the object stays listed as deleting.
    pub linger: Duration,
    pub caller: Caller,
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
    call_log: Vec<CallRecord>,
    /// Create answers being held back right now, by call number.
    held: BTreeMap<u64, CallRecord>,
    /// Woken on every change of the history, the call log or the held answers.
    changes: Arc<Notify>,
    rng: StdRng,
}

impl State {
    pub fn new(config: SimConfig, changes: Arc<Notify>) -> Self {
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
            call_log: Vec::new(),
            held: BTreeMap::new(),
            changes,
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
                        requested_description: None,
                        outcome: SimStatus::Completed,
                        ready_after: Duration::ZERO,
                        api: SimApi::Seed,
                        response_lost: false,
                        answer_held: None,
                        limit: None,
                        caller: Caller::default(),
                    },
                    created_at,
                    expires_at,
                );
            }
        }
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.changes.notify_waiters();
        self.seq
    }

    /// Logs an API request as it arrives; returns its number.
    pub fn log_call(
        &mut self,
        api: SimApi,
        endpoint: &str,
        user_agent: Option<String>,
        fault: Option<&str>,
    ) -> Caller {
        let n = self.call_log.len() as u64;
        self.call_log.push(CallRecord {
            n,
            at: Timestamp::now(),
            api,
            endpoint: endpoint.to_string(),
            user_agent: user_agent.clone(),
            fault: fault.map(str::to_string),
        });
        self.changes.notify_waiters();
        Caller {
            call: Some(n),
            user_agent,
        }
    }

    /// Calls numbered `since` and later.
    pub fn call_log(&self, since: u64) -> Vec<CallRecord> {
        let start = usize::try_from(since)
            .unwrap_or(usize::MAX)
            .min(self.call_log.len());
        self.call_log[start..].to_vec()
    }

    /// Marks the answer to call `n` as held back (a create's answer under `hold_create_rate`).
    pub fn hold(&mut self, caller: &Caller) {
        if let Some(n) = caller.call
            && let Some(call) = self.call_log.get(usize::try_from(n).unwrap_or(usize::MAX))
        {
            self.held.insert(n, call.clone());
            self.changes.notify_waiters();
        }
    }

    pub fn release(&mut self, caller: &Caller) {
        if let Some(n) = caller.call
            && self.held.remove(&n).is_some()
        {
            self.changes.notify_waiters();
        }
    }

    /// The calls whose answers are being held back right now.
    pub fn held(&self) -> Vec<CallRecord> {
        self.held.values().cloned().collect()
    }

    /// Drops objects whose delete has finished lingering.
    fn purge(&mut self, now: Instant) {
        self.snapshots.retain(|s| s.life.present(now));
        self.backups.retain(|b| b.life.present(now));
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
        caller: Caller,
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
            caller,
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn record_refusal(
        &mut self,
        kind: ObjectKind,
        api: SimApi,
        server: u64,
        name: Option<String>,
        description: Option<String>,
        limit: usize,
        caller: Caller,
    ) {
        let seq = self.next_seq();
        self.record.limit_refusals.push(RefusedCreate {
            seq,
            at: Timestamp::now(),
            api,
            kind,
            server,
            name,
            description,
            limit,
            caller,
        });
    }

    // ---- snapshots -----------------------------------------------------------------------

    /// Everything the provider holds for `server`: in progress, not listed yet and deleting
    /// ones included.
    pub fn snapshot_count(&self, server: u64) -> usize {
        let now = Instant::now();
        self.snapshots
            .iter()
            .filter(|s| s.server == server && s.life.present(now))
            .count()
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
            self.record_refusal(
                ObjectKind::Snapshot,
                new.api,
                new.server,
                Some(new.name),
                new.requested_description.or(new.description),
                limit,
                new.caller,
            );
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
        self.purge(now);
        let snapshot = Snapshot {
            id,
            server: new.server,
            name: new.name,
            description: new.description,
            created_at: now_ts(),
            life: Life::new(now, new.ready_after),
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
            answer_held_ms: new.answer_held.map(millis),
            requested_description: new.requested_description,
            foreign: view.foreign,
            caller: new.caller,
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

    /// Every present snapshot (deleting and not yet listed ones too), in creation order.
    pub fn snapshots(&mut self, server: Option<u64>) -> Vec<SimSnapshot> {
        self.list_snapshots(server, ListView::default())
    }

    /// What an API list shows: present and old enough, in creation order or shuffled
    /// (content RNG).
    pub fn list_snapshots(&mut self, server: Option<u64>, view: ListView) -> Vec<SimSnapshot> {
        let now = Instant::now();
        self.purge(now);
        let mut list: Vec<SimSnapshot> = self
            .snapshots
            .iter()
            .filter(|s| server.is_none_or(|id| s.server == id))
            .filter(|s| s.life.listed(now, view.hide_younger_than))
            .map(|s| s.view(now))
            .collect();
        if view.shuffle {
            list.shuffle(&mut self.rng);
        }
        list
    }

    pub fn snapshot(&self, id: u64) -> Option<SimSnapshot> {
        let now = Instant::now();
        self.snapshots
            .iter()
            .find(|s| s.id == id && s.life.present(now))
            .map(|s| s.view(now))
    }

    /// Deletes snapshot `id`; `server` (Zomro's `plid`) must match when given.
    pub fn delete_snapshot(
        &mut self,
        id: u64,
        server: Option<u64>,
        honour_protected: bool,
        req: DeleteRequest,
    ) -> DeleteOutcome<SimSnapshot> {
        let now = Instant::now();
        self.purge(now);
        let Some(pos) = self
            .snapshots
            .iter()
            .position(|s| s.id == id && server.is_none_or(|srv| s.server == srv))
        else {
            return DeleteOutcome::NotFound;
        };
        let view = self.snapshots[pos].view(now);
        if self.snapshots[pos].life.gone_at.is_some() {
            return DeleteOutcome::AlreadyDeleting(view);
        }
        let seq = self.next_seq();
        let entry = DeleteRecord {
            seq,
            at: Timestamp::now(),
            api: req.api,
            kind: ObjectKind::Snapshot,
            server: view.server,
            id,
            name: Some(view.name.clone()),
            description: view.description.clone(),
            foreign: view.foreign,
            backup_type: None,
            caller: req.caller,
        };
        if honour_protected && view.protected {
            self.record.refused_deletes.push(entry);
            return DeleteOutcome::Protected(view);
        }
        self.snapshots[pos].life.gone_at = Some(now + req.linger);
        self.purge(now);
        self.record.deletes.push(entry);
        DeleteOutcome::Deleted(view)
    }

    pub fn restore_snapshot(
        &mut self,
        id: u64,
        caller: Caller,
    ) -> Result<SimSnapshot, RestoreError> {
        let Some(snapshot) = self.snapshot(id) else {
            self.record_restore(
                ObjectKind::Snapshot,
                None,
                id,
                &Err("snapshot does not exist".into()),
                caller,
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
        self.record_restore(
            ObjectKind::Snapshot,
            Some(snapshot.server),
            id,
            &result,
            caller,
        );
        result.map(|()| snapshot).map_err(RestoreError::Invalid)
    }

    // ---- backups -------------------------------------------------------------------------

    /// Everything the provider holds for `server`, as [`Self::snapshot_count`].
    pub fn backup_count(&self, server: u64) -> usize {
        let now = Instant::now();
        self.backups
            .iter()
            .filter(|b| b.server == server && b.life.present(now))
            .count()
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
            self.record_refusal(
                ObjectKind::Backup,
                new.api,
                new.server,
                None,
                new.requested_description.or(new.description),
                limit,
                new.caller,
            );
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
        self.purge(now);
        let backup = Backup {
            id,
            server: new.server,
            backup_type: new.backup_type,
            description: new.description,
            created_at,
            expires_at,
            life: Life::new(now, new.ready_after),
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
            answer_held_ms: new.answer_held.map(millis),
            requested_description: new.requested_description,
            foreign: view.foreign,
            caller: new.caller,
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

    /// Every present backup of `server` (deleting and not yet listed ones too).
    pub fn backups(&mut self, server: Option<u64>) -> Vec<SimBackup> {
        self.list_backups(server, None, ListView::default())
    }

    /// What an API list shows, as [`Self::list_snapshots`].
    pub fn list_backups(
        &mut self,
        server: Option<u64>,
        backup_type: Option<BackupType>,
        view: ListView,
    ) -> Vec<SimBackup> {
        let now = Instant::now();
        self.purge(now);
        let mut list: Vec<SimBackup> = self
            .backups
            .iter()
            .filter(|b| server.is_none_or(|id| b.server == id))
            .filter(|b| backup_type.is_none_or(|t| b.backup_type == t))
            .filter(|b| b.life.listed(now, view.hide_younger_than))
            .map(|b| b.view(now))
            .collect();
        if view.shuffle {
            list.shuffle(&mut self.rng);
        }
        list
    }

    pub fn delete_backup(&mut self, id: u64, req: DeleteRequest) -> DeleteOutcome<SimBackup> {
        let now = Instant::now();
        self.purge(now);
        let Some(pos) = self.backups.iter().position(|b| b.id == id) else {
            return DeleteOutcome::NotFound;
        };
        let view = self.backups[pos].view(now);
        if self.backups[pos].life.gone_at.is_some() {
            return DeleteOutcome::AlreadyDeleting(view);
        }
        self.backups[pos].life.gone_at = Some(now + req.linger);
        self.purge(now);
        let seq = self.next_seq();
        self.record.deletes.push(DeleteRecord {
            seq,
            at: Timestamp::now(),
            api: req.api,
            kind: ObjectKind::Backup,
            server: view.server,
            id,
            name: None,
            description: view.description.clone(),
            foreign: view.foreign,
            backup_type: Some(view.backup_type),
            caller: req.caller,
        });
        DeleteOutcome::Deleted(view)
    }

    pub fn restore_backup(
        &mut self,
        server: u64,
        backup_id: u64,
        caller: Caller,
    ) -> Result<SimBackup, RestoreError> {
        let now = Instant::now();
        let backup = self
            .backups
            .iter()
            .find(|b| b.id == backup_id && b.life.present(now))
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
        self.record_restore(
            ObjectKind::Backup,
            Some(server),
            backup_id,
            &for_record,
            caller,
        );
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
            requested_description: None,
            outcome: SimStatus::Completed,
            ready_after: Duration::ZERO,
            protected: false,
            api: SimApi::VpsRest,
            response_lost: false,
            answer_held: None,
            limit,
            caller: Caller::default(),
        }
    }

    impl State {
        fn create_backup_for_test(&mut self, server: u64) -> u64 {
            self.add_backup(NewBackup {
                server,
                backup_type: BackupType::Manual,
                description: None,
                requested_description: None,
                outcome: SimStatus::Completed,
                ready_after: Duration::ZERO,
                api: SimApi::VpsRest,
                response_lost: false,
                answer_held: None,
                limit: None,
                caller: Caller::default(),
            })
            .id
        }
    }

    #[test]
    fn auto_backups_are_seeded_oldest_first_and_expire_a_month_later() {
        let mut state = State::new(config(), Arc::default());
        let list = state.backups(Some(1));
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
        let mut state = State::new(config(), Arc::default());
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
        assert_eq!(rec.limit_refusals.len(), 1);
        assert_eq!(rec.limit_refusals[0].name.as_deref(), Some("s5"));
        assert_eq!(rec.limit_refusals[0].limit, 5);
        assert_eq!(rec.servers[&1].snapshots_high_water, 6);
        assert_eq!(
            state.create_snapshot(new_snapshot(99, "x", Some(5))),
            Err(CreateError::NoServer)
        );
    }

    fn delete(linger: Duration) -> DeleteRequest {
        DeleteRequest {
            api: SimApi::VpsRest,
            linger,
            caller: Caller::default(),
        }
    }

    #[test]
    fn a_lingering_delete_keeps_counting_and_is_recorded_once() {
        let mut state = State::new(config(), Arc::default());
        let id = state
            .create_snapshot(new_snapshot(1, "s", Some(1)))
            .expect("room")
            .id;
        let long = Duration::from_secs(3600);
        assert!(matches!(
            state.delete_snapshot(id, None, false, delete(long)),
            DeleteOutcome::Deleted(_)
        ));
        assert_eq!(state.snapshots(Some(1))[0].status, SimStatus::Deleting);
        assert_eq!(state.snapshot_count(1), 1);
        assert_eq!(
            state.create_snapshot(new_snapshot(1, "t", Some(1))),
            Err(CreateError::Limit(1))
        );
        assert!(matches!(
            state.delete_snapshot(id, None, false, delete(long)),
            DeleteOutcome::AlreadyDeleting(_)
        ));
        assert_eq!(state.record().deletes.len(), 1);
        // Without linger the object goes at once.
        let mut state = State::new(config(), Arc::default());
        let id = state.create_backup_for_test(1);
        assert!(matches!(
            state.delete_backup(id, delete(Duration::ZERO)),
            DeleteOutcome::Deleted(_)
        ));
        assert!(matches!(
            state.delete_backup(id, delete(Duration::ZERO)),
            DeleteOutcome::NotFound
        ));
        assert_eq!(state.backup_count(1), 3);
    }

    #[test]
    fn young_objects_are_counted_but_not_listed() {
        let mut state = State::new(config(), Arc::default());
        state
            .create_snapshot(new_snapshot(2, "young", Some(5)))
            .expect("room");
        let hidden = ListView {
            shuffle: false,
            hide_younger_than: Duration::from_secs(3600),
        };
        assert!(state.list_snapshots(Some(2), hidden).is_empty());
        assert_eq!(state.list_snapshots(Some(2), ListView::default()).len(), 1);
        assert_eq!(state.snapshot_count(2), 1);
    }

    #[test]
    fn sessions_lapse_after_idle_time() {
        let mut state = State::new(
            SimConfig {
                session_idle: Duration::ZERO,
                ..config()
            },
            Arc::default(),
        );
        assert!(state.login("sim", "wrong").is_none());
        let id = state.login("sim", "sim-password").expect("login");
        std::thread::sleep(Duration::from_millis(5));
        assert!(!state.touch_session(&id));
        assert_eq!(state.live_sessions(), 0);
    }
}
