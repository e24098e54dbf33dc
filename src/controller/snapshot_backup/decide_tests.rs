//! Table tests (a row per branch) and property tests (the invariants) of `decide`.
use std::collections::BTreeSet;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;

use super::*;
use crate::controller::listings::{Item, ServerListing};
use crate::controller::snapshot_backup::facts::{
    Facts, Freshness, ObjectView, ProviderFacts, ServerFacts, Subject,
};

/// The re-create grace these tests assume.
const GRACE: Duration = Duration::from_secs(25);

fn t(s: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + s).unwrap()
}

fn carries(marker: &str, item: &Item) -> bool {
    item.label == marker
}

fn view(name: &str) -> ObjectView {
    ObjectView {
        key: format!("ns/{name}"),
        name: name.into(),
        resource_version: Some("1".into()),
        phase: None,
        reason: None,
        provider_id: None,
        import_id: None,
        marker: format!("{name}-marker"),
        intent: None,
        pinned: false,
        evictable: false,
        deleting: false,
        deletion_policy: DeletionPolicy::Delete,
        declared_at: t(0),
        has_finalizer: false,
        restore_source: false,
    }
}

/// A settled object of ours: created, its id recorded, complete.
fn settled(name: &str, id: &str) -> ObjectView {
    ObjectView {
        provider_id: Some(id.into()),
        phase: Some(Phase::Ready),
        reason: Some(Reason::Completed),
        intent: Some(t(0)),
        has_finalizer: true,
        ..view(name)
    }
}

fn item(id: &str, label: &str, state: RemoteState, at: i64) -> Item {
    Item {
        id: id.into(),
        label: label.into(),
        raw_status: format!("{state:?}"),
        state,
        created_at: Some(t(at)),
        size_mb: None,
        protected: false,
        automatic: false,
    }
}

fn listing(items: Vec<Item>, complete: bool, at: i64) -> ServerListing {
    ServerListing {
        items,
        complete,
        fetched: std::time::Instant::now(),
        fetched_at: t(at),
    }
}

fn facts(subject: ObjectView) -> Facts {
    Facts {
        now: t(1000),
        noun: "snapshot",
        marker_name: "spec.snapshotName",
        subject: Subject {
            view: subject,
            generation: Some(1),
            observed_generation: None,
            failure_deadline: Ok(Duration::from_secs(600)),
            sent_by_me: false,
        },
        provider: ProviderFacts::Ready { limit: 3 },
        server: None,
        first_listing_delay: None,
        carries,
    }
}

fn on_server(mut f: Facts, items: Vec<Item>, neighbours: Vec<ObjectView>) -> Facts {
    f.server = Some(ServerFacts {
        server: 7,
        listing: listing(items, true, 1000),
        neighbours,
        deleting: BTreeSet::new(),
        reserved: BTreeSet::new(),
        grace: GRACE,
    });
    f
}

fn reason_of(step: &Step) -> Option<Reason> {
    match step {
        Step::Report(v) | Step::Track { verdict: v, .. } | Step::Evict { verdict: v, .. } => {
            Some(v.reason)
        }
        _ => None,
    }
}

fn message_of(step: &Step) -> String {
    match step {
        Step::Report(v) | Step::Track { verdict: v, .. } | Step::Evict { verdict: v, .. } => {
            v.message.clone()
        }
        other => panic!("no message in {other:?}"),
    }
}

use RemoteState::{Failed, Gone, Pending, Ready, Unknown};

// --- final states -----------------------------------------------------------------------------

#[test]
fn an_evicted_object_only_makes_sure_its_provider_object_goes() {
    let evicted = ObjectView {
        phase: Some(Phase::Evicted),
        reason: Some(Reason::Evicted),
        ..settled("a", "1")
    };
    assert_eq!(
        decide(&facts(evicted.clone())),
        Step::List(Freshness::Resync)
    );
    // Another completed restore point stays listed: the eviction may finish.
    let still_listed = on_server(
        facts(evicted.clone()),
        vec![item("1", "a-marker", Ready, 0), item("2", "b", Ready, 10)],
        vec![],
    );
    assert_eq!(
        decide(&still_listed),
        Step::FinishEviction { id: "1".into() }
    );
    let leaving = on_server(
        facts(evicted.clone()),
        vec![item("1", "a-marker", Gone, 0)],
        vec![],
    );
    assert_eq!(decide(&leaving), Step::Keep(Requeue::Resync));
    let mut sent = still_listed.clone();
    sent.server.as_mut().unwrap().deleting.insert("1".into());
    assert_eq!(decide(&sent), Step::Keep(Requeue::Resync));
    let gone = on_server(facts(evicted.clone()), vec![], vec![]);
    assert_eq!(decide(&gone), Step::Keep(Requeue::Never));
    let mut no_provider = facts(evicted);
    no_provider.provider = ProviderFacts::Missing { name: "p".into() };
    assert_eq!(decide(&no_provider), Step::Keep(Requeue::Never));
}

#[test]
fn an_eviction_never_finishes_by_deleting_the_last_completed_restore_point() {
    // Marked Evicted beside another completed snapshot (o-other), which its user then deleted
    // while the eviction was unfinished (the leader froze between the mark and the delete):
    // the evicted one is now the server's only completed restore point, the create it made
    // room for is still in progress.
    let evicted = ObjectView {
        phase: Some(Phase::Evicted),
        reason: Some(Reason::Evicted),
        ..settled("a", "1")
    };
    let other = ObjectView {
        deleting: true,
        ..settled("other", "2")
    };
    let newcomer = ObjectView {
        phase: Some(Phase::Creating),
        reason: Some(Reason::Creating),
        provider_id: Some("3".into()),
        intent: Some(t(990)),
        ..view("new")
    };
    let held = on_server(
        facts(evicted.clone()),
        vec![
            item("1", "a-marker", Ready, 0),
            item("2", "other-marker", Ready, 5),
            item("3", "new-marker", Pending, 990),
        ],
        vec![other.clone(), newcomer.clone()],
    );
    assert_eq!(decide(&held), Step::Keep(Requeue::Resync));
    // Its slot is not counted as being freed: once the other is gone, a later create waits
    // as at a full server instead of for a deletion that is not coming.
    let mut waiting = on_server(
        facts(ObjectView {
            declared_at: t(20),
            ..view("late")
        }),
        vec![
            item("1", "a-marker", Ready, 0),
            item("3", "new-marker", Pending, 990),
        ],
        vec![evicted.clone(), newcomer.clone()],
    );
    waiting.provider = ProviderFacts::Ready { limit: 2 };
    assert_eq!(reason_of(&decide(&waiting)), Some(Reason::LimitReached));
    // Once the new one completes, the eviction finishes.
    let done = on_server(
        facts(evicted),
        vec![
            item("1", "a-marker", Ready, 0),
            item("3", "new-marker", Ready, 990),
        ],
        vec![ObjectView {
            phase: Some(Phase::Ready),
            reason: Some(Reason::Completed),
            ..newcomer
        }],
    );
    assert_eq!(decide(&done), Step::FinishEviction { id: "1".into() });
}

#[test]
fn a_failed_object_waits_for_a_spec_change() {
    let failed = ObjectView {
        phase: Some(Phase::Failed),
        reason: Some(Reason::GoneAtProvider),
        ..settled("a", "1")
    };
    let mut f = on_server(facts(failed), vec![item("1", "a-marker", Ready, 0)], vec![]);
    f.subject.observed_generation = Some(1);
    assert_eq!(decide(&f), Step::Keep(Requeue::Never));
    // An edit of the spec asks for a new look.
    f.subject.generation = Some(2);
    assert_eq!(reason_of(&decide(&f)), Some(Reason::Completed));
}

#[test]
fn an_unusable_deadline_is_an_invalid_spec() {
    let mut f = facts(view("a"));
    f.subject.failure_deadline = Err("spec.failureDeadline: number too large".into());
    let step = decide(&f);
    assert_eq!(reason_of(&step), Some(Reason::InvalidSpec));
    assert!(message_of(&step).contains("spec.failureDeadline"));
}

// --- the provider -----------------------------------------------------------------------------

#[test]
fn a_provider_that_cannot_serve_is_reported() {
    let rows = [
        (
            ProviderFacts::Missing { name: "p".into() },
            Reason::ProviderNotFound,
        ),
        (
            ProviderFacts::NotReady {
                name: "p".into(),
                why: "bad token".into(),
            },
            Reason::ProviderNotReady,
        ),
        (
            ProviderFacts::Unsupported {
                name: "p".into(),
                type_name: "Zomro".into(),
            },
            Reason::Unsupported,
        ),
    ];
    for (provider, reason) in rows {
        let mut f = facts(view("a"));
        f.provider = provider;
        assert_eq!(reason_of(&decide(&f)), Some(reason));
    }
}

#[test]
fn the_listing_is_read_as_fresh_as_the_object_needs() {
    assert_eq!(decide(&facts(view("a"))), Step::List(Freshness::Poll));
    let mut f = facts(settled("a", "1"));
    assert_eq!(decide(&f), Step::List(Freshness::Resync));
    // After a restart a settled object's first listing waits for its spread point.
    f.first_listing_delay = Some(Duration::from_secs(7));
    assert_eq!(
        decide(&f),
        Step::Keep(Requeue::FirstListing(Duration::from_secs(7)))
    );
    let mut creating = facts(view("a"));
    creating.first_listing_delay = Some(Duration::from_secs(7));
    assert_eq!(decide(&creating), Step::List(Freshness::Poll));
}

// --- ownership --------------------------------------------------------------------------------

#[test]
fn a_recorded_id_tracks_its_object() {
    let f = on_server(
        facts(settled("a", "1")),
        vec![item("1", "a-marker", Ready, 0)],
        vec![],
    );
    match decide(&f) {
        Step::Track {
            verdict,
            proof,
            claim,
            adopted,
        } => {
            assert_eq!(verdict.reason, Reason::Completed);
            assert_eq!(verdict.item.unwrap().id, "1");
            assert_eq!(proof, Proof::Recorded);
            assert!(!claim && !adopted);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_import_is_tracked_claimed_and_reported_as_adopted() {
    let imported = ObjectView {
        import_id: Some("9".into()),
        ..view("a")
    };
    let f = on_server(
        facts(imported),
        vec![item("9", "by-hand", Ready, 0)],
        vec![],
    );
    assert!(matches!(
        decide(&f),
        Step::Track {
            proof: Proof::Imported,
            claim: true,
            adopted: true,
            ..
        }
    ));
}

#[test]
fn a_marker_is_ours_only_on_an_object_made_after_our_intent() {
    let intent = ObjectView {
        intent: Some(t(500)),
        has_finalizer: true,
        ..view("a")
    };
    // Made after the intent: ours, and an adoption unless this process sent the create.
    let f = on_server(
        facts(intent.clone()),
        vec![item("5", "a-marker", Pending, 501)],
        vec![],
    );
    assert!(matches!(
        decide(&f),
        Step::Track {
            proof: Proof::Intent,
            adopted: true,
            ..
        }
    ));
    let mut mine = f.clone();
    mine.subject.sent_by_me = true;
    assert!(matches!(decide(&mine), Step::Track { adopted: false, .. }));
    // Made well before the intent: someone else's, whatever its name.
    let older = on_server(
        facts(intent.clone()),
        vec![item("4", "a-marker", Ready, 100)],
        vec![],
    );
    assert_eq!(reason_of(&decide(&older)), Some(Reason::NameConflict));
    // Two after the intent: neither is taken.
    let two = on_server(
        facts(intent),
        vec![
            item("5", "a-marker", Ready, 501),
            item("6", "a-marker", Ready, 502),
        ],
        vec![],
    );
    assert_eq!(reason_of(&decide(&two)), Some(Reason::AmbiguousMarker));
}

#[test]
fn a_date_only_creation_time_is_given_its_whole_day() {
    // A create sent late in the day; the provider says only which day it was made.
    let at = t(0) + SignedDuration::from_hours(20);
    let intent = ObjectView {
        intent: Some(at),
        ..view("a")
    };
    let midnight = Timestamp::from_second(at.as_second() - at.as_second() % 86_400).unwrap();
    assert!(at.duration_since(midnight) > SignedDuration::from_hours(1));
    let zomro = Item {
        created_at: Some(midnight),
        ..item("5", "a-marker", Ready, 0)
    };
    assert!(matches!(
        ownership(&intent, &[zomro], &[], carries),
        Ownership::Found(_, Proof::Intent)
    ));
}

#[test]
fn an_object_another_declared_object_recorded_is_never_taken_by_marker() {
    let intent = ObjectView {
        intent: Some(t(500)),
        ..view("a")
    };
    let other = ObjectView {
        marker: "a-marker".into(),
        ..settled("b", "5")
    };
    assert_eq!(
        ownership(
            &intent,
            &[item("5", "a-marker", Ready, 600)],
            &[other],
            carries
        ),
        Ownership::None
    );
}

// --- an id recorded but not listed ------------------------------------------------------------

#[test]
fn a_recorded_object_that_vanished_is_gone_only_when_a_complete_listing_says_so() {
    let f = on_server(facts(settled("a", "1")), vec![], vec![]);
    assert_eq!(reason_of(&decide(&f)), Some(Reason::GoneAtProvider));
    let mut partial = f.clone();
    partial.server.as_mut().unwrap().listing.complete = false;
    assert_eq!(decide(&partial), Step::Keep(Requeue::Poll));
    // Just created: the provider may not list it yet.
    let mut fresh = f.clone();
    fresh.subject.view.intent = Some(t(990));
    assert_eq!(decide(&fresh), Step::Keep(Requeue::Poll));
    let import = on_server(
        facts(ObjectView {
            import_id: Some("9".into()),
            ..view("a")
        }),
        vec![],
        vec![],
    );
    let step = decide(&import);
    assert_eq!(reason_of(&step), Some(Reason::NotFoundAtProvider));
    assert!(message_of(&step).contains("spec.importId"));
}

// --- no provider object yet -------------------------------------------------------------------

#[test]
fn nothing_is_created_on_a_partial_listing() {
    let mut f = on_server(facts(view("a")), vec![], vec![]);
    f.server.as_mut().unwrap().listing.complete = false;
    assert_eq!(reason_of(&decide(&f)), Some(Reason::ListingIncomplete));
}

#[test]
fn a_create_in_flight_is_waited_for() {
    let sent = ObjectView {
        intent: Some(t(990)),
        reason: Some(Reason::CreateOutcomeUnknown),
        ..view("a")
    };
    let f = on_server(facts(sent.clone()), vec![], vec![]);
    assert_eq!(reason_of(&decide(&f)), Some(Reason::CreateOutcomeUnknown));
    // Past the grace in a complete listing taken after it: never made, create again.
    let mut later = f.clone();
    later.subject.view.intent = Some(t(0));
    assert_eq!(decide(&later), Step::Create);
}

#[test]
fn a_name_taken_at_the_provider_is_a_conflict_not_an_adoption() {
    let f = on_server(
        facts(view("a")),
        vec![item("801", "a-marker", Ready, 0)],
        vec![],
    );
    let step = decide(&f);
    assert_eq!(reason_of(&step), Some(Reason::NameConflict));
    let message = message_of(&step);
    assert!(
        message.contains("801") && message.contains("spec.importId"),
        "{message}"
    );
    // Another object creating under the same name.
    let twin = ObjectView {
        marker: "a-marker".into(),
        intent: Some(t(995)),
        ..view("b")
    };
    let f = on_server(facts(view("a")), vec![], vec![twin]);
    assert_eq!(reason_of(&decide(&f)), Some(Reason::NameConflict));
}

#[test]
fn a_free_slot_admits_the_create() {
    let f = on_server(
        facts(view("a")),
        vec![item("1", "x", Ready, 0), item("2", "y", Ready, 0)],
        vec![],
    );
    assert_eq!(decide(&f), Step::Create);
}

#[test]
fn a_full_server_evicts_an_evictable_neighbour_for_the_create() {
    let victim = ObjectView {
        evictable: true,
        marker: "v-marker".into(),
        ..settled("v", "1")
    };
    let f = on_server(
        facts(view("a")),
        vec![
            item("1", "v-marker", Ready, 0),
            item("2", "x", Ready, 1),
            item("3", "y", Ready, 2),
        ],
        vec![victim],
    );
    match decide(&f) {
        Step::Evict { victims, verdict } => {
            assert_eq!(
                victims,
                vec![Victim {
                    key: "ns/v".into(),
                    resource_version: Some("1".into()),
                    id: "1".into()
                }]
            );
            assert_eq!(verdict.reason, Reason::WaitingForRoom);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_full_server_with_nothing_evictable_is_limit_reached() {
    let pinned = ObjectView {
        evictable: true,
        pinned: true,
        marker: "p-marker".into(),
        ..settled("p", "1")
    };
    let source = ObjectView {
        evictable: true,
        restore_source: true,
        marker: "s-marker".into(),
        ..settled("s", "2")
    };
    let f = on_server(
        facts(view("a")),
        vec![
            item("1", "p-marker", Ready, 0),
            item("2", "s-marker", Ready, 1),
            item("3", "foreign", Ready, 2),
        ],
        vec![pinned, source],
    );
    let step = decide(&f);
    assert_eq!(reason_of(&step), Some(Reason::LimitReached));
    assert!(message_of(&step).contains("server 7"));
}

#[test]
fn a_slot_being_freed_is_waited_for_not_evicted_again() {
    let evictable = ObjectView {
        evictable: true,
        marker: "v-marker".into(),
        ..settled("v", "2")
    };
    let f = on_server(
        facts(view("a")),
        vec![
            item("1", "foreign", Gone, 0),
            item("2", "v-marker", Ready, 1),
            item("3", "z", Ready, 2),
        ],
        vec![evictable],
    );
    let step = decide(&f);
    assert!(matches!(step, Step::Report(_)), "{step:?}");
    assert_eq!(reason_of(&step), Some(Reason::WaitingForRoom));
    // A delete this process sent is the same, whatever the status the provider shows.
    let mut sent = on_server(
        facts(view("a")),
        vec![
            item("1", "foreign", Ready, 0),
            item("2", "x", Ready, 1),
            item("3", "y", Ready, 2),
        ],
        vec![],
    );
    sent.server.as_mut().unwrap().deleting.insert("1".into());
    assert_eq!(reason_of(&decide(&sent)), Some(Reason::WaitingForRoom));
}

#[test]
fn a_neighbours_create_in_flight_takes_a_slot() {
    let flying = ObjectView {
        intent: Some(t(995)),
        ..view("b")
    };
    let f = on_server(
        facts(view("a")),
        vec![item("1", "x", Ready, 0), item("2", "y", Ready, 1)],
        vec![flying],
    );
    assert_eq!(reason_of(&decide(&f)), Some(Reason::LimitReached));
}

#[test]
fn a_create_sent_with_the_lock_let_go_takes_a_slot_and_is_no_want() {
    let sending = view("b");
    let mut f = on_server(
        facts(view("a")),
        vec![item("1", "x", Ready, 0), item("2", "y", Ready, 1)],
        vec![sending],
    );
    f.server.as_mut().unwrap().reserved.insert("ns/b".into());
    assert_eq!(reason_of(&decide(&f)), Some(Reason::LimitReached));
    // Its intent recorded meanwhile: still one slot, not two.
    f.server.as_mut().unwrap().neighbours[0].intent = Some(t(999));
    f.provider = ProviderFacts::Ready { limit: 4 };
    assert_eq!(decide(&f), Step::Create);
}

#[test]
fn a_neighbour_created_but_not_listed_yet_still_takes_its_slot() {
    // Its id came back from the create; the provider lists new objects late.
    let fresh = ObjectView {
        provider_id: Some("9".into()),
        intent: Some(t(995)),
        ..view("b")
    };
    let f = on_server(
        facts(view("a")),
        vec![item("1", "x", Ready, 0), item("2", "y", Ready, 1)],
        vec![fresh],
    );
    assert_eq!(reason_of(&decide(&f)), Some(Reason::LimitReached));
}

#[test]
fn an_evicted_neighbour_gone_from_the_listing_frees_its_slot() {
    // Its intent is recent, but it was listed (and evicted): absent now means gone.
    let evicted = ObjectView {
        phase: Some(Phase::Evicted),
        reason: Some(Reason::Evicted),
        intent: Some(t(995)),
        ..settled("v", "9")
    };
    let f = on_server(
        facts(view("a")),
        vec![item("1", "x", Ready, 0), item("2", "y", Ready, 1)],
        vec![evicted],
    );
    assert_eq!(decide(&f), Step::Create);
}

#[test]
fn an_older_declaration_goes_first() {
    let older = ObjectView {
        declared_at: t(-10),
        ..view("b")
    };
    let f = on_server(
        facts(view("a")),
        vec![item("1", "x", Ready, 0), item("2", "y", Ready, 1)],
        vec![older],
    );
    assert_ne!(decide(&f), Step::Create);
}

#[test]
fn the_provider_state_of_the_tracked_object_decides_its_status() {
    let rows = [
        (Ready, 0, Reason::Completed),
        (Failed, 0, Reason::ProviderFailed),
        (Gone, 0, Reason::GoneAtProvider),
        (Pending, 990, Reason::Creating),
        (Unknown, 990, Reason::UnknownProviderStatus),
        (Pending, 0, Reason::DeadlineExceeded),
    ];
    for (state, intent_at, reason) in rows {
        let v = ObjectView {
            intent: Some(t(intent_at)),
            ..settled("a", "1")
        };
        let f = on_server(
            facts(v),
            vec![item("1", "a-marker", state.clone(), 0)],
            vec![],
        );
        assert_eq!(reason_of(&decide(&f)), Some(reason), "{state:?}");
    }
}

#[test]
fn every_create_answer_has_its_status() {
    let f = on_server(facts(view("a")), vec![], vec![]);
    let d = Duration::from_secs(600);
    let rows = [
        (
            CreateAnswer::Made(item("1", "a-marker", Pending, 1000)),
            Reason::Creating,
        ),
        (CreateAnswer::Accepted, Reason::Creating),
        (
            CreateAnswer::Unknown("timeout".into()),
            Reason::CreateOutcomeUnknown,
        ),
        (
            CreateAnswer::LimitReached("full".into()),
            Reason::LimitReached,
        ),
        (CreateAnswer::RateLimited(None), Reason::RateLimited),
        (CreateAnswer::ServerNotFound, Reason::ServerNotFound),
        (CreateAnswer::Rejected("bad".into()), Reason::CreateRejected),
    ];
    for (answer, reason) in rows {
        assert_eq!(after_create(&f, &answer, d).reason, reason, "{answer:?}");
    }
    assert!(
        after_create(&f, &CreateAnswer::ServerNotFound, d)
            .message
            .contains("spec.serverId 7")
    );
}

// --- deletion ---------------------------------------------------------------------------------

#[test]
fn deletion_table() {
    let deleting = |v: ObjectView| ObjectView {
        deleting: true,
        ..v
    };
    // Retain leaves the provider object.
    let retain = facts(deleting(ObjectView {
        deletion_policy: DeletionPolicy::Retain,
        ..settled("a", "1")
    }));
    assert_eq!(
        decide_cleanup(&retain),
        CleanupStep::Release {
            retained: Some("1".into())
        }
    );
    // No provider: nothing owned goes at once; something owned waits.
    let mut missing = facts(deleting(view("a")));
    missing.provider = ProviderFacts::Missing { name: "p".into() };
    assert_eq!(
        decide_cleanup(&missing),
        CleanupStep::Release { retained: None }
    );
    let mut owned = facts(deleting(settled("a", "1")));
    owned.provider = ProviderFacts::NotReady {
        name: "p".into(),
        why: "x".into(),
    };
    assert!(matches!(
        decide_cleanup(&owned),
        CleanupStep::Hold(Verdict {
            reason: Reason::DeletionBlocked,
            ..
        })
    ));
    // Not judged by this process yet: nothing is written or released meanwhile.
    let mut unjudged = facts(deleting(settled("a", "1")));
    unjudged.provider = ProviderFacts::Unjudged;
    assert_eq!(decide_cleanup(&unjudged), CleanupStep::Wait);
    let mut ready_unjudged = facts(settled("a", "1"));
    ready_unjudged.provider = ProviderFacts::Unjudged;
    assert_eq!(decide(&ready_unjudged), Step::Keep(Requeue::Slow));
    let mut unsupported = facts(deleting(settled("a", "1")));
    unsupported.provider = ProviderFacts::Unsupported {
        name: "p".into(),
        type_name: "Zomro".into(),
    };
    assert_eq!(
        decide_cleanup(&unsupported),
        CleanupStep::Release { retained: None }
    );
    assert_eq!(
        decide_cleanup(&facts(deleting(settled("a", "1")))),
        CleanupStep::List
    );
    // Born with the finalizer (admission) and never sent a create: released without a
    // listing, whatever the provider's state.
    assert_eq!(
        decide_cleanup(&facts(deleting(view("a")))),
        CleanupStep::Release { retained: None }
    );
    let sent = ObjectView {
        intent: Some(t(1_000)),
        ..view("a")
    };
    assert_eq!(decide_cleanup(&facts(deleting(sent))), CleanupStep::List);
    let found = on_server(
        facts(deleting(settled("a", "1"))),
        vec![item("1", "a-marker", Ready, 0)],
        vec![],
    );
    assert_eq!(
        decide_cleanup(&found),
        CleanupStep::Delete { id: "1".into() }
    );
    let leaving = on_server(
        facts(deleting(settled("a", "1"))),
        vec![item("1", "a-marker", Gone, 0)],
        vec![],
    );
    assert_eq!(
        decide_cleanup(&leaving),
        CleanupStep::Release { retained: None }
    );
    let mut partial = on_server(facts(deleting(settled("a", "1"))), vec![], vec![]);
    partial.server.as_mut().unwrap().listing.complete = false;
    assert!(matches!(
        decide_cleanup(&partial),
        CleanupStep::Hold(Verdict {
            reason: Reason::DeletionPending,
            ..
        })
    ));
    let in_flight = on_server(
        facts(deleting(ObjectView {
            intent: Some(t(995)),
            ..view("a")
        })),
        vec![],
        vec![],
    );
    assert!(matches!(
        decide_cleanup(&in_flight),
        CleanupStep::Hold(Verdict {
            reason: Reason::DeletionPending,
            ..
        })
    ));
    let ambiguous = on_server(
        facts(deleting(ObjectView {
            intent: Some(t(500)),
            ..view("a")
        })),
        vec![
            item("5", "a-marker", Ready, 501),
            item("6", "a-marker", Ready, 502),
        ],
        vec![],
    );
    assert!(matches!(
        decide_cleanup(&ambiguous),
        CleanupStep::Hold(Verdict {
            reason: Reason::AmbiguousMarker,
            ..
        })
    ));
}

#[test]
fn deleting_an_object_never_deletes_a_snapshot_it_only_shares_a_name_with() {
    let f = on_server(
        facts(ObjectView {
            deleting: true,
            ..view("a")
        }),
        vec![item("801", "a-marker", Ready, 0)],
        vec![],
    );
    assert_eq!(decide_cleanup(&f), CleanupStep::Release { retained: None });
}

// --- invariants -------------------------------------------------------------------------------

/// Random declared objects and listings on one server.
fn arb_world() -> impl Strategy<Value = (Facts, usize)> {
    let obj = (
        0..6u8, // which marker
        0..4u8, // what is recorded
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        0..5u8,     // phase
        -60..60i64, // intent offset
        any::<bool>(),
    );
    let itm = (0..8u8, 0..5u8, -600..600i64, any::<bool>());
    (
        proptest::collection::vec(obj, 1..6),
        proptest::collection::vec(itm, 0..8),
        1..6usize,
        any::<bool>(),
    )
        .prop_map(|(objs, items, limit, complete)| {
            let states = [Ready, Pending, Failed, Gone, Unknown];
            let items: Vec<Item> = items
                .iter()
                .enumerate()
                .map(|(i, (m, s, at, auto))| Item {
                    automatic: *auto && *m == 7,
                    ..item(
                        &format!("{i}"),
                        &format!("m{m}"),
                        states[*s as usize].clone(),
                        1000 + at,
                    )
                })
                .collect();
            let phases = [
                None,
                Some(Phase::Ready),
                Some(Phase::Creating),
                Some(Phase::Failed),
                Some(Phase::Evicted),
            ];
            let views: Vec<ObjectView> = objs
                .iter()
                .enumerate()
                .map(
                    |(i, (m, rec, pinned, evictable, deleting, phase, off, intent))| {
                        let mut v = view(&format!("o{i}"));
                        v.marker = format!("m{m}");
                        v.pinned = *pinned;
                        v.evictable = *evictable;
                        v.deleting = *deleting && i > 0;
                        v.phase = phases[*phase as usize];
                        v.reason = match v.phase {
                            Some(Phase::Ready) => Some(Reason::Completed),
                            Some(Phase::Failed) => Some(Reason::ProviderFailed),
                            Some(Phase::Evicted) => Some(Reason::Evicted),
                            _ => None,
                        };
                        v.intent = intent.then(|| t(1000 + off * 10));
                        v.declared_at = t(i as i64);
                        v.resource_version = Some(format!("{i}"));
                        match rec {
                            1 if !items.is_empty() => {
                                v.provider_id = Some(items[i % items.len()].id.clone())
                            }
                            2 if !items.is_empty() => {
                                v.import_id = Some(items[i % items.len()].id.clone())
                            }
                            _ => {}
                        }
                        v
                    },
                )
                .collect();
            let mut f = facts(views[0].clone());
            f.provider = ProviderFacts::Ready { limit };
            f.server = Some(ServerFacts {
                server: 7,
                listing: listing(items, complete, 1000),
                neighbours: views[1..].to_vec(),
                deleting: BTreeSet::new(),
                reserved: BTreeSet::new(),
                grace: GRACE,
            });
            (f, limit)
        })
}

proptest! {
    #[test]
    fn creates_only_into_room_a_complete_listing_shows(world in arb_world()) {
        let (f, limit) = world;
        if decide(&f) == Step::Create {
            let srv = f.server.as_ref().unwrap();
            prop_assert!(srv.listing.complete, "created on a partial listing");
            // Creates in flight the listing does not show (yet) count as taken.
            let in_flight = srv
                .neighbours
                .iter()
                .filter(|n| n.import_id.is_none() && live_intent(n, srv))
                .filter(|n| !matches!(n.phase, Some(Phase::Ready | Phase::Failed | Phase::Evicted)))
                .filter(|n| matches!(ownership(n, &srv.listing.items, &[], f.carries), Ownership::None))
                .count();
            prop_assert!(srv.listing.items.len() + in_flight < limit, "created into a full server");
            prop_assert!(f.subject.view.phase != Some(Phase::Evicted));
        }
    }

    #[test]
    fn evicts_only_what_may_go(world in arb_world()) {
        let (f, _) = world;
        if let Step::Evict { victims, .. } = decide(&f) {
            let srv = f.server.as_ref().unwrap();
            let completed = srv.listing.items.iter().filter(|i| i.state == Ready).count();
            let mut completed_evicted = 0;
            for v in &victims {
                let owner = srv.neighbours.iter().find(|n| n.key == v.key);
                prop_assert!(owner.is_some(), "evicted something no declared object owns");
                let owner = owner.unwrap();
                prop_assert!(owner.evictable && !owner.pinned && !owner.restore_source && !owner.deleting);
                prop_assert!(owner.phase != Some(Phase::Evicted));
                let item = srv.listing.items.iter().find(|i| i.id == v.id).unwrap();
                prop_assert!(!item.automatic);
                prop_assert!(matches!(item.state, Ready | Failed), "evicted one in progress");
                let proven = matches!(
                    ownership(owner, &srv.listing.items, &[], f.carries),
                    Ownership::Found(ref i, _) if i.id == v.id
                );
                prop_assert!(proven, "evicted without proof of ownership");
                if item.state == Ready {
                    completed_evicted += 1;
                }
            }
            prop_assert!(completed_evicted < completed.max(1), "evicted the last completed restore point");
            prop_assert!(srv.listing.complete);
        }
    }

    #[test]
    fn an_eviction_finishes_only_beside_another_completed_restore_point(world in arb_world()) {
        let (f, _) = world;
        if let Step::FinishEviction { id } = decide(&f) {
            let srv = f.server.as_ref().unwrap();
            // Two objects recording one id is a conflict of its own (other tests): here each
            // provider object has at most one recorded owner, so "its owner" is well defined.
            let mut recorded: Vec<&String> = srv
                .neighbours
                .iter()
                .chain([&f.subject.view])
                .filter_map(|o| o.provider_id.as_ref().or(o.import_id.as_ref()))
                .collect();
            let all = recorded.len();
            recorded.sort();
            recorded.dedup();
            prop_assume!(recorded.len() == all);
            // Owners of other items going away: evicted, or deleted by their user.
            let going = |item: &Item| {
                item.state == Gone
                    || srv.deleting.contains(&item.id)
                    // Automatic backups belong to the provider, whoever recorded them.
                    || !item.automatic && srv.neighbours.iter().any(|n| {
                        (n.phase == Some(Phase::Evicted)
                            || (n.deleting && n.deletion_policy == DeletionPolicy::Delete))
                            && matches!(
                                ownership(n, &srv.listing.items, &[], f.carries),
                                Ownership::Found(ref i, _) if i.id == item.id
                            )
                    })
            };
            let others = srv
                .listing
                .items
                .iter()
                .filter(|i| i.id != id && i.state == Ready && !going(i))
                .count();
            let completed = srv.listing.items.iter().any(|i| i.id == id && i.state == Ready);
            // A user who deleted an object of their own that also claims it asked for this.
            let asked = srv.neighbours.iter().any(|n| {
                n.deleting
                    && n.deletion_policy == DeletionPolicy::Delete
                    && matches!(
                        ownership(n, &srv.listing.items, &[], f.carries),
                        Ownership::Found(ref i, _) if i.id == id
                    )
            });
            prop_assert!(
                !completed || asked || others > 0,
                "deleted the last completed restore point {id}"
            );
        }
    }

    #[test]
    fn final_states_are_never_left_by_themselves(world in arb_world()) {
        let (mut f, _) = world;
        if f.subject.view.phase == Some(Phase::Evicted) {
            let step = decide(&f);
            prop_assert!(
                matches!(step, Step::Keep(_) | Step::List(_) | Step::FinishEviction { .. }),
                "an evicted object moved: {step:?}"
            );
        }
        if f.subject.view.reason.is_some_and(|r| r.class() == Class::Terminal) {
            f.subject.observed_generation = f.subject.generation;
            prop_assert_eq!(decide(&f), Step::Keep(Requeue::Never));
        }
    }

    #[test]
    fn nothing_is_ever_owned_without_proof(world in arb_world()) {
        let (f, _) = world;
        let srv = f.server.as_ref().unwrap();
        let v = &f.subject.view;
        if let Ownership::Found(item, proof) = ownership(v, &srv.listing.items, &srv.neighbours, f.carries) {
            let ok = match proof {
                Proof::Recorded => v.provider_id.as_deref() == Some(item.id.as_str()),
                Proof::Imported => v.import_id.as_deref() == Some(item.id.as_str()),
                Proof::Intent => v.intent.is_some() && carries(&v.marker, &item) && !item.automatic,
            };
            prop_assert!(ok);
        }
    }

    /// Runs one object through decide and a provider that may lose answers and list new
    /// objects late (up to a bound below the grace). However the steps interleave, the
    /// provider never makes two objects for it.
    #[test]
    fn no_sequence_of_steps_creates_twice(
        events in proptest::collection::vec((0..3u8, 0..40u64, 0..20u64), 1..40),
    ) {
        let mut provider: Vec<(Item, Timestamp)> = Vec::new(); // object, visible from
        let mut v = view("a");
        let mut now = t(0);
        let mut made = 0;
        let mut next_id = 1;
        for (fate, wait, delay) in events {
            let visible: Vec<Item> = provider
                .iter()
                .filter(|(_, from)| *from <= now)
                .map(|(i, _)| i.clone())
                .collect();
            let mut f = facts(v.clone());
            f.now = now;
            f.server = Some(ServerFacts {
                server: 7,
                listing: listing(visible, true, 0),
                neighbours: vec![],
                deleting: BTreeSet::new(),
        reserved: BTreeSet::new(),
                grace: GRACE,
            });
            f.server.as_mut().unwrap().listing.fetched_at = now;
            match decide(&f) {
                Step::Create => {
                    v.intent = Some(now);
                    v.has_finalizer = true;
                    match fate {
                        // Never reached the provider.
                        0 => {}
                        // Made; the answer says so.
                        1 => {
                            let it = item(&next_id.to_string(), &v.marker, Pending, 0);
                            let it = Item { created_at: Some(now), ..it };
                            provider.push((it.clone(), now + SignedDuration::from_secs(delay as i64)));
                            v.provider_id = Some(it.id);
                            made += 1;
                            next_id += 1;
                        }
                        // Made; the answer is lost, and it is listed after `delay`.
                        _ => {
                            let it = item(&next_id.to_string(), &v.marker, Pending, 0);
                            let it = Item { created_at: Some(now), ..it };
                            provider.push((it, now + SignedDuration::from_secs(delay as i64)));
                            made += 1;
                            next_id += 1;
                        }
                    }
                }
                Step::Track { verdict, .. } => {
                    v.provider_id = verdict.item.map(|i| i.id);
                    v.reason = Some(verdict.reason);
                    v.phase = Some(verdict.reason.phase());
                }
                Step::Report(verdict) => {
                    v.reason = Some(verdict.reason);
                    v.phase = Some(verdict.reason.phase());
                }
                _ => {}
            }
            prop_assert!(made <= 1, "two provider objects for one declared object");
            now += SignedDuration::from_secs(wait as i64);
        }
    }
}
