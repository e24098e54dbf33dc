//! Per-server capacity planning: which declared objects may be created now, which provider
//! objects must be evicted to make room, and who must wait.
//!
//! Rules (docs/providers.md, "Safety rules"; README, "Limits and garbage collection"):
//! - Everything the provider lists for the server occupies a slot: foreign objects,
//!   in-progress ones and failed ones included. A create is admitted only into a slot that is
//!   free *now*; an eviction frees its slot only once a later listing no longer shows it, so
//!   the limit holds even when a delete is slow or fails.
//! - Only a declared, non-pinned object that is marked evictable may be evicted, oldest first
//!   by provider creation time; failed ones before completed ones; never an in-progress one.
//! - The last completed restore point of the server is never evicted for a create that has not
//!   completed yet.
//! - An eviction is planned only for a create that cannot otherwise fit, and an evicted object
//!   is never re-created by the caller: declarations that cannot all fit settle, they don't churn.
use std::collections::BTreeSet;

use jiff::Timestamp;

/// State of one provider object, as far as capacity planning cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotState {
    InProgress,
    Completed,
    Failed,
    /// Undocumented status: treated like in-progress (never evicted, still occupies a slot).
    Unknown,
}

/// Who a provider object belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// Not declared by any vpsnap object (made by hand, by another tool, automatic backups,
    /// or retained after its object was deleted): never touched.
    Foreign,
    /// Claimed by the declared object `key`.
    Declared {
        key: String,
        pinned: bool,
        evictable: bool,
    },
}

/// One object the provider lists for the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub id: String,
    pub created_at: Option<Timestamp>,
    pub state: SlotState,
    pub owner: Owner,
}

/// A declared object that has no provider object yet and wants one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Want {
    pub key: String,
    /// When the object was declared; older declarations are served first.
    pub declared_at: Timestamp,
}

/// Why a want cannot be served now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blocked {
    /// Room is being made: these evictions must finish first.
    WaitingForEviction { evicting: Vec<String> },
    /// Nothing may be evicted; `occupants` describes what fills the server.
    LimitReached { occupants: Occupancy },
}

/// What fills a server, for conditions and events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Occupancy {
    pub limit: usize,
    pub foreign: usize,
    pub pinned: usize,
    pub in_progress: usize,
    pub protected_last_restore_point: usize,
    pub declared_not_evictable: usize,
}

impl std::fmt::Display for Occupancy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "limit {} reached: {} foreign, {} pinned, {} in progress, {} not marked evictable, {} kept as the last completed restore point",
            self.limit,
            self.foreign,
            self.pinned,
            self.in_progress,
            self.declared_not_evictable,
            self.protected_last_restore_point
        )
    }
}

/// The plan for one server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Declared objects that may send their create now.
    pub admit: Vec<String>,
    /// Provider ids to delete now to make room, with the key of the object that owns each.
    pub evict: Vec<(String, String)>,
    /// Declared objects that must wait, and why.
    pub blocked: Vec<(String, Blocked)>,
    /// Provider ids that would be evicted next if more room were needed (for status).
    pub next_evictions: Vec<String>,
}

/// Plans one server. `evicting` are provider ids whose deletion is already under way (they
/// still occupy their slot until the provider stops listing them, whatever their owner).
pub fn plan(limit: usize, slots: &[Slot], wants: &[Want], evicting: &BTreeSet<String>) -> Plan {
    let mut plan = Plan::default();
    let mut free = limit.saturating_sub(slots.len());

    let mut wants: Vec<&Want> = wants.iter().collect();
    wants.sort_by(|a, b| {
        a.declared_at
            .cmp(&b.declared_at)
            .then_with(|| a.key.cmp(&b.key))
    });

    let mut candidates = eviction_order(slots);
    // Deletions already under way count as room being made, whoever's they are: a want waits
    // for them instead of evicting more. They are handed out in listing order.
    let mut pending_room: Vec<String> = slots
        .iter()
        .filter(|s| evicting.contains(&s.id))
        .map(|s| s.id.clone())
        .collect();
    pending_room.reverse();
    candidates.retain(|s| !evicting.contains(&s.id));

    let mut completed_left = slots
        .iter()
        .filter(|s| s.state == SlotState::Completed && !evicting.contains(&s.id))
        .count();

    for want in wants {
        if free > 0 {
            free -= 1;
            plan.admit.push(want.key.clone());
            continue;
        }
        if let Some(id) = pending_room.pop() {
            plan.blocked.push((
                want.key.clone(),
                Blocked::WaitingForEviction { evicting: vec![id] },
            ));
            continue;
        }
        let pick = candidates
            .iter()
            .position(|s| s.state != SlotState::Completed || completed_left > 1);
        match pick {
            Some(i) => {
                let slot = candidates.remove(i);
                if slot.state == SlotState::Completed {
                    completed_left -= 1;
                }
                let owner = match &slot.owner {
                    Owner::Declared { key, .. } => key.clone(),
                    Owner::Foreign => unreachable_owner(),
                };
                plan.blocked.push((
                    want.key.clone(),
                    Blocked::WaitingForEviction {
                        evicting: vec![slot.id.clone()],
                    },
                ));
                plan.evict.push((slot.id.clone(), owner));
            }
            None => plan.blocked.push((
                want.key.clone(),
                Blocked::LimitReached {
                    occupants: occupancy(limit, slots, completed_left),
                },
            )),
        }
    }
    // What would go next, in order, while keeping the last completed restore point.
    for slot in &candidates {
        if plan.next_evictions.len() == 3 {
            break;
        }
        if slot.state == SlotState::Completed {
            if completed_left <= 1 {
                continue;
            }
            completed_left -= 1;
        }
        plan.next_evictions.push(slot.id.clone());
    }
    plan
}

// `eviction_order` only yields declared slots, so a foreign owner here is a logic error that
// must not delete anything: fall back to an owner key that matches no object.
fn unreachable_owner() -> String {
    String::new()
}

/// Evictable slots, in the order they would go: failed first, then completed; oldest first by
/// provider creation time (unknown times last), ties by id.
fn eviction_order(slots: &[Slot]) -> Vec<&Slot> {
    let mut out: Vec<&Slot> = slots
        .iter()
        .filter(|s| {
            matches!(
                s.owner,
                Owner::Declared {
                    pinned: false,
                    evictable: true,
                    ..
                }
            )
        })
        .filter(|s| matches!(s.state, SlotState::Completed | SlotState::Failed))
        .collect();
    out.sort_by(|a, b| {
        let rank = |s: &Slot| if s.state == SlotState::Failed { 0 } else { 1 };
        rank(a)
            .cmp(&rank(b))
            .then_with(|| match (a.created_at, b.created_at) {
                (Some(x), Some(y)) => x.cmp(&y),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            })
            .then_with(|| a.id.cmp(&b.id))
    });
    out
}

fn occupancy(limit: usize, slots: &[Slot], completed_left: usize) -> Occupancy {
    let mut o = Occupancy {
        limit,
        ..Occupancy::default()
    };
    for s in slots {
        match (&s.owner, s.state) {
            (Owner::Foreign, _) => o.foreign += 1,
            (Owner::Declared { pinned: true, .. }, _) => o.pinned += 1,
            (_, SlotState::InProgress | SlotState::Unknown) => o.in_progress += 1,
            (
                Owner::Declared {
                    evictable: false, ..
                },
                _,
            ) => o.declared_not_evictable += 1,
            (Owner::Declared { .. }, SlotState::Completed) if completed_left <= 1 => {
                o.protected_last_restore_point += 1
            }
            (Owner::Declared { .. }, _) => o.declared_not_evictable += 1,
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }
    fn slot(id: &str, at: i64, state: SlotState, owner: Owner) -> Slot {
        Slot {
            id: id.into(),
            created_at: Some(t(at)),
            state,
            owner,
        }
    }
    fn ours(key: &str, evictable: bool) -> Owner {
        Owner::Declared {
            key: key.into(),
            pinned: false,
            evictable,
        }
    }
    fn want(key: &str, at: i64) -> Want {
        Want {
            key: key.into(),
            declared_at: t(at),
        }
    }
    use SlotState::*;

    #[test]
    fn free_slots_admit_oldest_declarations_first() {
        let slots = vec![slot("1", 0, Completed, Owner::Foreign)];
        let p = plan(
            3,
            &slots,
            &[want("c", 3), want("a", 1), want("b", 2)],
            &BTreeSet::new(),
        );
        assert_eq!(p.admit, vec!["a", "b"]);
        assert!(matches!(p.blocked[0], (ref k, Blocked::LimitReached { .. }) if k == "c"));
        assert!(p.evict.is_empty());
    }

    #[test]
    fn full_server_evicts_oldest_evictable_completed() {
        let slots = vec![
            slot("1", 10, Completed, ours("x", true)),
            slot("2", 5, Completed, ours("y", true)),
            slot("3", 1, Completed, ours("z", false)),
        ];
        let p = plan(3, &slots, &[want("new", 20)], &BTreeSet::new());
        assert!(p.admit.is_empty());
        assert_eq!(p.evict, vec![("2".to_string(), "y".to_string())]);
        assert_eq!(p.next_evictions, vec!["1"]);
    }

    #[test]
    fn failed_go_before_completed() {
        let slots = vec![
            slot("1", 1, Completed, ours("x", true)),
            slot("2", 9, Failed, ours("y", true)),
        ];
        let p = plan(2, &slots, &[want("new", 20)], &BTreeSet::new());
        assert_eq!(p.evict, vec![("2".to_string(), "y".to_string())]);
    }

    #[test]
    fn never_foreign_pinned_or_in_progress() {
        let slots = vec![
            slot("1", 1, Completed, Owner::Foreign),
            slot(
                "2",
                2,
                Completed,
                Owner::Declared {
                    key: "p".into(),
                    pinned: true,
                    evictable: true,
                },
            ),
            slot("3", 3, InProgress, ours("q", true)),
            slot("4", 4, Unknown, ours("r", true)),
        ];
        let p = plan(4, &slots, &[want("new", 20)], &BTreeSet::new());
        assert!(p.evict.is_empty());
        match &p.blocked[0].1 {
            Blocked::LimitReached { occupants } => {
                assert_eq!(
                    (occupants.foreign, occupants.pinned, occupants.in_progress),
                    (1, 1, 2)
                );
                assert!(occupants.to_string().contains("limit 4 reached"));
            }
            other => panic!("expected LimitReached, got {other:?}"),
        }
    }

    #[test]
    fn last_completed_restore_point_survives() {
        let slots = vec![
            slot("1", 1, Completed, ours("x", true)),
            slot("2", 2, InProgress, ours("y", false)),
        ];
        let p = plan(2, &slots, &[want("new", 20)], &BTreeSet::new());
        assert!(p.evict.is_empty());
        assert!(
            matches!(&p.blocked[0].1, Blocked::LimitReached { occupants } if occupants.protected_last_restore_point == 1)
        );
    }

    #[test]
    fn a_deletion_under_way_is_waited_for_not_repeated() {
        let slots = vec![
            slot("1", 1, Completed, ours("x", true)),
            slot("2", 2, Completed, ours("y", true)),
        ];
        let evicting: BTreeSet<String> = ["1".to_string()].into();
        let p = plan(2, &slots, &[want("new", 20)], &evicting);
        assert!(p.evict.is_empty());
        assert_eq!(
            p.blocked[0].1,
            Blocked::WaitingForEviction {
                evicting: vec!["1".into()]
            }
        );
    }

    #[test]
    fn over_limit_listing_admits_nothing() {
        let slots: Vec<Slot> = (0..7)
            .map(|i| slot(&i.to_string(), i, Completed, Owner::Foreign))
            .collect();
        let p = plan(5, &slots, &[want("a", 1)], &BTreeSet::new());
        assert!(p.admit.is_empty());
    }

    #[test]
    fn no_wants_no_evictions() {
        let slots = vec![
            slot("1", 1, Completed, ours("x", true)),
            slot("2", 2, Completed, ours("y", true)),
        ];
        let p = plan(2, &slots, &[], &BTreeSet::new());
        assert!(p.evict.is_empty() && p.admit.is_empty());
        assert_eq!(p.next_evictions, vec!["1"]);
    }

    fn arb_slot() -> impl Strategy<Value = Slot> {
        (0..1000i64, 0..4u8, 0..4u8, 0..3u8).prop_map(|(at, st, own, flags)| {
            let state = [InProgress, Completed, Failed, Unknown][st as usize];
            let owner = if own == 0 {
                Owner::Foreign
            } else {
                Owner::Declared {
                    key: format!("k{at}-{own}"),
                    pinned: flags == 1,
                    evictable: flags != 0,
                }
            };
            Slot {
                id: format!("id{at}-{st}-{own}-{flags}"),
                created_at: Some(t(at)),
                state,
                owner,
            }
        })
    }

    proptest! {
        #[test]
        fn plan_never_breaks_the_rules(
            limit in 1usize..8,
            slots in proptest::collection::vec(arb_slot(), 0..10),
            n_wants in 0usize..6,
        ) {
            let mut seen = BTreeSet::new();
            let slots: Vec<Slot> = slots.into_iter().filter(|s| seen.insert(s.id.clone())).collect();
            let wants: Vec<Want> = (0..n_wants).map(|i| want(&format!("w{i}"), i as i64)).collect();
            let p = plan(limit, &slots, &wants, &BTreeSet::new());
            // Creates never exceed the room that is free now.
            prop_assert!(slots.len() + p.admit.len() <= limit.max(slots.len()));
            prop_assert!(p.admit.len() <= limit.saturating_sub(slots.len()));
            // Every want is admitted or blocked, exactly once.
            prop_assert_eq!(p.admit.len() + p.blocked.len(), wants.len());
            // At most one eviction per blocked want.
            prop_assert!(p.evict.len() <= p.blocked.len());
            let completed = slots.iter().filter(|s| s.state == Completed).count();
            let evicted_completed = p.evict.iter().filter(|(id, _)| slots.iter().any(|s| &s.id == id && s.state == Completed)).count();
            if completed > 0 {
                prop_assert!(evicted_completed < completed, "the last completed restore point was chosen");
            }
            for (id, owner) in &p.evict {
                let s = slots.iter().find(|s| &s.id == id).unwrap();
                let evictable = matches!(s.owner, Owner::Declared { pinned: false, evictable: true, .. });
                prop_assert!(evictable, "evicted a foreign, pinned or unmarked object");
                let settled = matches!(s.state, Completed | Failed);
                prop_assert!(settled, "evicted an in-progress object");
                prop_assert!(!owner.is_empty());
            }
        }
    }
}
