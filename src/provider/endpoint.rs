//! Every provider call vpsnap makes, named once: the bounded operation name (metrics label),
//! the HTTP method and the endpoint as documented (traces' `url.template`). Templates carry
//! placeholders, never ids, query values or credentials. The contracts behind them are in
//! docs/providers.md (§A VpsRest, §B Zomro).

/// One kind of provider call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Metrics label, e.g. `create_snapshot`.
    pub operation: &'static str,
    pub method: &'static str,
    /// Path relative to the configured endpoint (VpsRest), or the `func` (Zomro).
    pub template: &'static str,
}

const fn ep(operation: &'static str, method: &'static str, template: &'static str) -> Endpoint {
    Endpoint {
        operation,
        method,
        template,
    }
}

/// The VpsRest API (docs/providers.md §A).
pub mod vps_rest {
    use super::{Endpoint, ep};

    pub const CHECK_CREDENTIALS: Endpoint = ep("check_credentials", "GET", "account/me/");
    pub const LIST_SNAPSHOTS: Endpoint =
        ep("list_snapshots", "GET", "snapshots/?server_id={server_id}");
    pub const CREATE_SNAPSHOT: Endpoint = ep("create_snapshot", "POST", "snapshots/");
    pub const DELETE_SNAPSHOT: Endpoint =
        ep("delete_snapshot", "DELETE", "snapshots/{snapshot_id}/");
    pub const RESTORE_SNAPSHOT: Endpoint = ep(
        "restore_snapshot",
        "POST",
        "snapshots/{snapshot_id}/restore/",
    );
    pub const LIST_BACKUPS: Endpoint = ep(
        "list_backups",
        "GET",
        "backups/?server_id={server_id}&backup_type={backup_type}",
    );
    pub const CREATE_BACKUP: Endpoint = ep("create_backup", "POST", "backups/");
    pub const DELETE_BACKUP: Endpoint = ep("delete_backup", "DELETE", "backups/{backup_id}/");
    pub const RESTORE_BACKUP: Endpoint =
        ep("restore_backup", "POST", "servers/{server_id}/restore/");
}

/// The Zomro API (docs/providers.md §B): one URL, form POSTs, the operation in `func`.
pub mod zomro {
    use super::{Endpoint, ep};

    pub const AUTH: Endpoint = ep("auth", "POST", "func=auth");
    pub const LIST_SNAPSHOTS: Endpoint = ep("list_snapshots", "POST", "func=instances.snapshots");
    pub const CREATE_SNAPSHOT: Endpoint =
        ep("create_snapshot", "POST", "func=instances.snapshots.edit");
    pub const DELETE_SNAPSHOT: Endpoint = ep("delete_snapshot", "POST", "func=image.delete");
}
