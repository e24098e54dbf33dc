//! Reading a server's published occupancy: why each item stays, and which ones block a new
//! snapshot. Pure, so `why` and `snapshot --wait` say the same thing.
use serde::Serialize;

use crate::api::{Occupant, OccupantState, OwnerKind, ServerOccupancyStatus};

/// One item on a server and why garbage collection leaves it (or would take it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Standing {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// `vpssnapshot/NAME` or `vpsbackup/NAME` when declared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    pub state: OccupantState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// In plain words: why it stays, or that it may go.
    pub why: String,
    /// Whether garbage collection may evict it.
    pub evictable: bool,
    /// Position in the operator's eviction order (1 = next), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_eviction: Option<usize>,
}

/// Every item of `server`, oldest first, with its standing. `resource` is `vpssnapshot` or
/// `vpsbackup`, to name declared objects.
pub fn standings(server: &ServerOccupancyStatus, resource: &str) -> Vec<Standing> {
    let completed = server
        .items
        .iter()
        .filter(|i| i.state == OccupantState::Completed)
        .count();
    server
        .items
        .iter()
        .map(|item| {
            let (why, evictable) = reason(item, completed);
            Standing {
                id: item.id.clone(),
                label: item.label.clone(),
                object: item.object.as_ref().map(|o| format!("{resource}/{o}")),
                state: item.state,
                created_at: item.created_at.clone(),
                why: why.to_owned(),
                evictable,
                next_eviction: server
                    .next_evictions
                    .iter()
                    .position(|id| id == &item.id)
                    .map(|p| p + 1),
            }
        })
        .collect()
}

fn reason(item: &Occupant, completed: usize) -> (&'static str, bool) {
    if item.leaving {
        return (
            "being deleted: counted until the provider stops listing it",
            false,
        );
    }
    match item.owner {
        OwnerKind::Foreign => ("not made by vpsnap: counted, never touched", false),
        OwnerKind::Automatic => (
            "the provider's automatic backup: counted, never touched",
            false,
        ),
        OwnerKind::Declared => {
            if item.pinned {
                ("pinned", false)
            } else if matches!(
                item.state,
                OccupantState::InProgress | OccupantState::Unknown
            ) {
                ("in progress", false)
            } else if !item.evictable {
                ("not marked evictable", false)
            } else if item.state == OccupantState::Completed && completed <= 1 {
                ("the server's last completed restore point", false)
            } else if item.state == OccupantState::Failed {
                ("evictable (failed: goes first)", true)
            } else {
                ("evictable", true)
            }
        }
    }
}

/// What stands in the way of a new item: everything that may not be evicted.
pub fn blocking(standings: &[Standing]) -> Vec<&Standing> {
    standings.iter().filter(|s| !s.evictable).collect()
}

/// One line per blocker, e.g. `vpssnapshot/base (id 9001): pinned`.
pub fn describe(s: &Standing) -> String {
    let what = match (&s.object, &s.label) {
        (Some(o), _) => format!("{o} (id {})", s.id),
        (None, Some(l)) => format!("{l:?} (id {})", s.id),
        (None, None) => format!("id {}", s.id),
    };
    format!("{what}: {}", s.why)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::OccupancyClass;

    fn occupant(id: &str, owner: OwnerKind, state: OccupantState) -> Occupant {
        Occupant {
            id: id.into(),
            label: Some(format!("label-{id}")),
            state,
            owner,
            object: (owner == OwnerKind::Declared).then(|| format!("obj-{id}")),
            created_at: Some(format!("2026-11-2{id}T00:00:00Z")),
            ..Default::default()
        }
    }

    fn server(items: Vec<Occupant>, next: &[&str]) -> ServerOccupancyStatus {
        ServerOccupancyStatus {
            server_id: 7,
            class: OccupancyClass::Snapshot,
            limit: 5,
            used: items.len() as i64,
            complete: true,
            items,
            next_evictions: next.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn every_kind_of_occupant_has_its_reason() {
        use OccupantState::*;
        let mut pinned = occupant("2", OwnerKind::Declared, Completed);
        pinned.pinned = true;
        let mut evictable = occupant("5", OwnerKind::Declared, Completed);
        evictable.evictable = true;
        let mut failed = occupant("6", OwnerKind::Declared, Failed);
        failed.evictable = true;
        let s = server(
            vec![
                occupant("1", OwnerKind::Foreign, Completed),
                pinned,
                occupant("3", OwnerKind::Declared, InProgress),
                occupant("4", OwnerKind::Declared, Completed),
                evictable,
                failed,
                occupant("7", OwnerKind::Automatic, Completed),
            ],
            &["6", "5"],
        );
        let got = standings(&s, "vpssnapshot");
        let whys: Vec<(&str, &str, bool)> = got
            .iter()
            .map(|s| (s.id.as_str(), s.why.as_str(), s.evictable))
            .collect();
        assert_eq!(
            whys,
            vec![
                ("1", "not made by vpsnap: counted, never touched", false),
                ("2", "pinned", false),
                ("3", "in progress", false),
                ("4", "not marked evictable", false),
                ("5", "evictable", true),
                ("6", "evictable (failed: goes first)", true),
                (
                    "7",
                    "the provider's automatic backup: counted, never touched",
                    false
                ),
            ]
        );
        assert_eq!(got[5].next_eviction, Some(1));
        assert_eq!(got[4].next_eviction, Some(2));
        assert_eq!(blocking(&got).len(), 5);
        assert_eq!(describe(&got[1]), "vpssnapshot/obj-2 (id 2): pinned");
        assert_eq!(
            describe(&got[0]),
            "\"label-1\" (id 1): not made by vpsnap: counted, never touched"
        );
    }

    #[test]
    fn the_last_completed_restore_point_stays() {
        let mut only = occupant("1", OwnerKind::Declared, OccupantState::Completed);
        only.evictable = true;
        let s = server(
            vec![
                only,
                occupant("2", OwnerKind::Declared, OccupantState::InProgress),
            ],
            &[],
        );
        let got = standings(&s, "vpsbackup");
        assert_eq!(got[0].why, "the server's last completed restore point");
        assert!(!got[0].evictable);
        assert_eq!(got[0].object.as_deref(), Some("vpsbackup/obj-1"));
    }
}
