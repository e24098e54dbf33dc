//! Provider simulator serving both provider APIs from memory over real HTTP.
//!
//! Written from `provider-api.md` alone, independently of `crate::provider`, so that contract
//! tests pitting the clients against it can catch a misreading on either side.
//!
//! - VpsRest under `/api/v1/` (paths only with their trailing slash; without it: 404).
//! - Zomro (BILLmanager) at `POST /billmgr`.
//! - Inspection and control under `/_sim/` (no auth, never faulted).
//!
//! Both façades share one backend: the same servers and the same snapshot store (VpsRest
//! `in_progress`/`completed`/`failed` are Zomro `Saving`/`Active`/`Killed`), so the library
//! views and the history cover whichever API a test drives. Backups and restores exist only
//! in VpsRest, protection only in Zomro.

mod cli;
mod config;
mod conn;
mod duration;
mod faults;
mod form;
mod gate;
mod inspect;
mod model;
mod server;
mod state;
mod vps_rest;
mod zomro;

#[cfg(test)]
mod tests;

pub use cli::{IdRange, MAX_SERVERS, SimArgs, ZomroUser, parse_servers_file, run};
pub use config::SimConfig;
pub use duration::{format_duration, parse_duration};
pub use faults::{Faults, TIMEOUT_HOLD};
pub use model::{
    BackupType, CallRecord, Caller, CreateRecord, DeleteRecord, ObjectKind, Record, RefusedCreate,
    RestoreRecord, ServerRecord, SimApi, SimBackup, SimServer, SimSnapshot, SimStatus,
};
pub use server::{SimHandle, start};
pub use state::{FIRST_BACKUP_ID, FIRST_SNAPSHOT_ID};
pub use vps_rest::MAX_NAME_LEN;
