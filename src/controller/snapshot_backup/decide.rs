//! The pure decision: `decide(&Facts) -> Step` while the object exists, `decide_cleanup` once
//! it is being deleted. No apiserver, no provider, no clock (the facts carry `now`).
//!
//! Rules, each with table rows and property tests below:
//! - Ownership needs proof: a provider object belongs to a declared object only by the id it
//!   recorded, its `importId`, or its marker on an object made after its own recorded create
//!   intent. A marker alone proves nothing: an unproven match is a conflict, never an adoption.
//! - A create goes out only into a slot that a complete listing shows free now; creates still
//!   in flight occupy a slot too, and a slot being freed counts until the provider stops
//!   listing it.
//! - Evicted never changes again; Failed only when the spec changes.
//! - Eviction takes only declared, evictable, unpinned, settled objects no restore needs, and
//!   never the last completed restore point.
use std::collections::BTreeSet;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::facts::{Facts, Freshness, ObjectView, ProviderFacts, ServerFacts};
use super::reason::{Class, Reason};
use crate::api::{DeletionPolicy, Phase};
use crate::controller::listings::{Item, ServerListing};
use crate::plan::gc::{self, Blocked, Owner, Slot, SlotState, Want};
use crate::provider::RemoteState;

/// Clock difference tolerated between the provider's `created_at` and this process's clock
/// when an object is matched to an intent.
const CLOCK_SKEW: SignedDuration = SignedDuration::from_mins(5);

/// When the object should be looked at again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requeue {
    /// Something is in flight: the provider's poll interval.
    Poll,
    /// Settled: the resync interval.
    Resync,
    /// Settled, after a restart: the server's first listing waits this long, so a fleet's
    /// listings spread over a resync period instead of all arriving at once.
    FirstListing(Duration),
    /// Waiting for a person: a slow re-check.
    Slow,
    After(Duration),
    /// Only a change of the object wakes it.
    Never,
}

/// What the status should say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub reason: Reason,
    pub message: String,
    /// The provider object, when one is tracked.
    pub item: Option<Item>,
    pub requeue: Requeue,
}

impl Verdict {
    pub fn new(reason: Reason, message: impl Into<String>, requeue: Requeue) -> Self {
        Verdict {
            reason,
            message: message.into(),
            item: None,
            requeue,
        }
    }
}

/// An object whose provider object goes to make room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Victim {
    pub key: String,
    /// The version the decision saw: the eviction mark is conditional on it.
    pub resource_version: Option<String>,
    pub id: String,
}

/// How the object's provider object was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proof {
    /// By the id its status recorded.
    Recorded,
    /// By `spec.importId`.
    Imported,
    /// By its marker, on an object made after its recorded create intent.
    Intent,
}

/// The next step for an object that is not being deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Read the server's listing first.
    List(Freshness),
    /// Nothing to write.
    Keep(Requeue),
    Report(Verdict),
    /// Record the provider object found with `proof`; `claim`: add the finalizer first (an
    /// import, or an object from before finalizers were added at the intent).
    Track {
        verdict: Verdict,
        proof: Proof,
        claim: bool,
        /// Found without this process having sent its create: worth an `Adopted` Event.
        adopted: bool,
    },
    /// Mark each victim `Evicted` (conditional on the version seen), then delete its object.
    Evict {
        victims: Vec<Victim>,
        verdict: Verdict,
    },
    /// An evicted object's provider object is still listed: delete it (again).
    FinishEviction {
        id: String,
    },
    /// Record the intent together with the finalizer, then create.
    Create,
}

/// What owns a listed provider object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ownership {
    Found(Item, Proof),
    /// Several objects carry the marker after the intent: none is taken.
    Ambiguous(Vec<String>),
    None,
}

pub fn decide(f: &Facts) -> Step {
    let s = &f.subject;
    let v = &s.view;
    if v.phase == Some(Phase::Evicted) {
        return after_eviction(f);
    }
    if s.observed_generation == s.generation
        && s.observed_generation.is_some()
        && v.reason.is_some_and(|r| r.class() == Class::Terminal)
    {
        return Step::Keep(Requeue::Never);
    }
    let deadline = match &s.failure_deadline {
        Ok(d) => *d,
        Err(why) => return report(Reason::InvalidSpec, why.clone(), Requeue::Never),
    };
    let ProviderFacts::Ready { limit } = f.provider else {
        return unusable_provider(f);
    };
    let Some(srv) = &f.server else {
        let settled = v.provider_id.is_some() && v.phase == Some(Phase::Ready);
        if settled && let Some(wait) = f.first_listing_delay {
            return Step::Keep(Requeue::FirstListing(wait));
        }
        return Step::List(if settled {
            Freshness::Resync
        } else {
            Freshness::Poll
        });
    };
    match ownership(v, &srv.listing.items, &srv.neighbours, f.carries) {
        Ownership::Found(item, proof) => track(f, item, proof, deadline),
        Ownership::Ambiguous(ids) => report(
            Reason::AmbiguousMarker,
            format!(
                "{}s {} all carry this object's marker {:?} and were made after its create was sent; vpsnap takes none of them. Delete the extra ones at the provider",
                f.noun,
                ids.join(", "),
                v.marker
            ),
            Requeue::Slow,
        ),
        Ownership::None if v.provider_id.is_some() || v.import_id.is_some() => unlisted(f, srv),
        Ownership::None => not_made_yet(f, srv, limit),
    }
}

/// Why the provider cannot be used.
fn unusable_provider(f: &Facts) -> Step {
    match &f.provider {
        ProviderFacts::Missing { name } => report(
            Reason::ProviderNotFound,
            format!(
                "VpsProvider {name:?} (spec.providerRef.name) does not exist in this namespace"
            ),
            Requeue::Slow,
        ),
        ProviderFacts::NotReady { name, why } => report(
            Reason::ProviderNotReady,
            format!("VpsProvider {name:?} is not Ready ({why}); waiting"),
            Requeue::Slow,
        ),
        ProviderFacts::Unsupported { name, type_name } => report(
            Reason::Unsupported,
            format!(
                "provider {name:?} ({type_name}) does not support {}s in its documented API",
                f.noun
            ),
            Requeue::Never,
        ),
        // Its judgement reconciles this object; the status stays as it is meanwhile.
        ProviderFacts::Unjudged => Step::Keep(Requeue::Slow),
        ProviderFacts::Ready { .. } => Step::Keep(Requeue::Poll),
    }
}

/// A recorded or imported id the listing does not show.
fn unlisted(f: &Facts, srv: &ServerFacts) -> Step {
    let v = &f.subject.view;
    // Absence from a partial listing proves nothing, and a new object may not be listed yet:
    // the status stays as it is.
    if !srv.listing.complete || live_intent(v, srv) {
        return Step::Keep(Requeue::Poll);
    }
    match (&v.provider_id, &v.import_id) {
        (None, Some(id)) => report(
            Reason::NotFoundAtProvider,
            format!(
                "spec.importId {id:?} is not among the {}s of server {}",
                f.noun, srv.server
            ),
            Requeue::Never,
        ),
        (id, _) => report(
            Reason::GoneAtProvider,
            format!(
                "{} {} no longer exists at the provider; it was deleted outside vpsnap",
                f.noun,
                id.as_deref().unwrap_or_default()
            ),
            Requeue::Never,
        ),
    }
}

/// Nothing at the provider yet: wait, conflict, or plan a create.
fn not_made_yet(f: &Facts, srv: &ServerFacts, limit: usize) -> Step {
    let v = &f.subject.view;
    if !srv.listing.complete {
        return report(
            Reason::ListingIncomplete,
            format!(
                "the provider listed server {}'s {}s only in part, so free room cannot be confirmed; waiting for a complete listing",
                srv.server, f.noun
            ),
            Requeue::Poll,
        );
    }
    if live_intent(v, srv) {
        let reason = match v.reason {
            Some(r @ (Reason::CreateOutcomeUnknown | Reason::RateLimited)) => r,
            _ => Reason::Creating,
        };
        return report(
            reason,
            "create sent; waiting for the provider to list it",
            Requeue::Poll,
        );
    }
    if let Some(message) = name_conflict(f, srv) {
        return report(Reason::NameConflict, message, Requeue::Slow);
    }
    capacity(f, srv, limit)
}

/// The provider object `v` owns, with its proof (see the module rules).
pub fn ownership(
    v: &ObjectView,
    items: &[Item],
    others: &[ObjectView],
    carries: fn(&str, &Item) -> bool,
) -> Ownership {
    if let Some(id) = &v.provider_id {
        return match items.iter().find(|i| &i.id == id) {
            Some(i) => Ownership::Found(i.clone(), Proof::Recorded),
            None => Ownership::None,
        };
    }
    if let Some(id) = &v.import_id {
        return match items.iter().find(|i| &i.id == id) {
            Some(i) => Ownership::Found(i.clone(), Proof::Imported),
            None => Ownership::None,
        };
    }
    let Some(intent) = v.intent else {
        return Ownership::None;
    };
    let claimed: BTreeSet<&str> = others
        .iter()
        .flat_map(|o| [o.provider_id.as_deref(), o.import_id.as_deref()])
        .flatten()
        .collect();
    let found: Vec<&Item> = items
        .iter()
        .filter(|i| {
            !i.automatic
                && !claimed.contains(i.id.as_str())
                && carries(&v.marker, i)
                && made_after(i, intent)
        })
        .collect();
    match found.as_slice() {
        [] => Ownership::None,
        [one] => Ownership::Found((*one).clone(), Proof::Intent),
        many => Ownership::Ambiguous(many.iter().map(|i| i.id.clone()).collect()),
    }
}

/// Whether `item` can have been made by a create sent at `intent`. A provider that gives a
/// date only (midnight UTC) is given the whole day.
fn made_after(item: &Item, intent: Timestamp) -> bool {
    let Some(created) = item.created_at else {
        return true;
    };
    let date_only = created.as_second().rem_euclid(86_400) == 0 && created.subsec_nanosecond() == 0;
    let slack = if date_only {
        CLOCK_SKEW + SignedDuration::from_hours(24)
    } else {
        CLOCK_SKEW
    };
    created.duration_since(intent) >= -slack
}

/// Whether a create sent at `intent` that `listing` does not show can be taken as never made:
/// the listing is complete and was taken `grace` (`Timings::intent_grace`) after the intent.
pub fn intent_expired(intent: Timestamp, listing: &ServerListing, grace: Duration) -> bool {
    let grace = SignedDuration::try_from(grace).unwrap_or(SignedDuration::MAX);
    listing.complete && listing.fetched_at.duration_since(intent) >= grace
}

fn report(reason: Reason, message: impl Into<String>, requeue: Requeue) -> Step {
    Step::Report(Verdict::new(reason, message, requeue))
}

/// Tracks the provider object the subject owns.
fn track(f: &Facts, item: Item, proof: Proof, deadline: Duration) -> Step {
    let s = &f.subject;
    let newly = s.view.provider_id.as_deref() != Some(item.id.as_str());
    Step::Track {
        verdict: tracked(f, item, deadline),
        proof,
        claim: !s.view.has_finalizer,
        adopted: newly && (proof == Proof::Imported || !s.sent_by_me),
    }
}

/// The status a provider object's state gives its owner.
fn tracked(f: &Facts, item: Item, deadline: Duration) -> Verdict {
    let what = format!("{} {}", f.noun, item.id);
    let mut verdict = match item.state {
        RemoteState::Ready => Verdict::new(
            Reason::Completed,
            format!("{what} is complete"),
            Requeue::Resync,
        ),
        RemoteState::Failed => Verdict::new(
            Reason::ProviderFailed,
            format!("the provider reports {what} as {:?}", item.raw_status),
            Requeue::Never,
        ),
        RemoteState::Gone => Verdict::new(
            Reason::GoneAtProvider,
            format!(
                "the provider reports {what} as {:?}: it is being deleted outside vpsnap",
                item.raw_status
            ),
            Requeue::Never,
        ),
        RemoteState::Pending | RemoteState::Unknown => {
            let since = f.subject.view.intent.or(item.created_at);
            let limit = SignedDuration::try_from(deadline).unwrap_or(SignedDuration::MAX);
            if since.is_some_and(|t| f.now.duration_since(t) > limit) {
                Verdict::new(
                    Reason::DeadlineExceeded,
                    format!(
                        "{what} still {:?} after the failure deadline of {deadline:?} (spec.failureDeadline)",
                        item.raw_status
                    ),
                    Requeue::Never,
                )
            } else if item.state == RemoteState::Unknown {
                Verdict::new(
                    Reason::UnknownProviderStatus,
                    format!(
                        "the provider reports {what} with an undocumented status {:?}",
                        item.raw_status
                    ),
                    Requeue::Poll,
                )
            } else {
                Verdict::new(
                    Reason::Creating,
                    format!("{what} is being created"),
                    Requeue::Poll,
                )
            }
        }
    };
    verdict.item = Some(item);
    verdict
}

/// An evicted object stays evicted; it only makes sure its provider object goes.
fn after_eviction(f: &Facts) -> Step {
    if !matches!(f.provider, ProviderFacts::Ready { .. }) {
        return Step::Keep(Requeue::Never);
    }
    let Some(srv) = &f.server else {
        return Step::List(Freshness::Resync);
    };
    let v = &f.subject.view;
    match ownership(v, &srv.listing.items, &srv.neighbours, f.carries) {
        Ownership::Found(item, _)
            if item.state != RemoteState::Gone && !srv.deleting.contains(&item.id) =>
        {
            // Held while it is the server's last completed restore point (see `slots`).
            let (_, leaving) = slots(Some(v), srv, f.carries);
            if leaving.contains(&item.id) {
                Step::FinishEviction { id: item.id }
            } else {
                Step::Keep(Requeue::Resync)
            }
        }
        Ownership::Found(..) => Step::Keep(Requeue::Resync),
        _ if !srv.listing.complete => Step::Keep(Requeue::Resync),
        _ => Step::Keep(Requeue::Never),
    }
}

/// The subject's marker is taken on the server: by a listed object it cannot prove is its
/// own, or by another object's create in flight.
fn name_conflict(f: &Facts, srv: &ServerFacts) -> Option<String> {
    let v = &f.subject.view;
    if let Some(item) = srv
        .listing
        .items
        .iter()
        .find(|i| !i.automatic && (f.carries)(&v.marker, i))
    {
        return Some(format!(
            "{} {:?} is already taken on server {} by {} {}, which vpsnap did not make for this object, so it is not adopted. To manage that {}, delete this object and create one with spec.importId: \"{}\"; otherwise choose another name",
            f.marker_name, v.marker, srv.server, f.noun, item.id, f.noun, item.id
        ));
    }
    srv.neighbours
        .iter()
        .find(|n| n.marker == v.marker && n.provider_id.is_none() && live_intent(n, srv))
        .map(|n| {
            format!(
                "{} {:?} is being created on server {} for {}; two objects cannot name one {}",
                f.marker_name, v.marker, srv.server, n.key, f.noun
            )
        })
}

pub fn live_intent(o: &ObjectView, srv: &ServerFacts) -> bool {
    o.intent
        .is_some_and(|at| !intent_expired(at, &srv.listing, srv.grace))
}

/// Room for the subject's create: now, after evictions, or not at all.
fn capacity(f: &Facts, srv: &ServerFacts, limit: usize) -> Step {
    let me = &f.subject.view.key;
    let (slots, leaving) = slots(Some(&f.subject.view), srv, f.carries);
    let wants = wants(f, srv);
    let plan = gc::plan(limit, &slots, &wants, &leaving);
    if plan.admit.contains(me) {
        return Step::Create;
    }
    let blocked = plan
        .blocked
        .iter()
        .find(|(k, _)| k == me)
        .map(|(_, b)| b.clone());
    match blocked {
        Some(Blocked::WaitingForEviction { evicting }) => {
            let verdict = Verdict::new(
                Reason::WaitingForRoom,
                format!(
                    "server {} is at its limit of {limit}; waiting for {} {} to go to make room",
                    srv.server,
                    f.noun,
                    evicting.join(", ")
                ),
                Requeue::Poll,
            );
            let all: Vec<&ObjectView> = srv.neighbours.iter().collect();
            let victims: Vec<Victim> = plan
                .evict
                .iter()
                .filter(|(id, _)| evicting.contains(id))
                .filter_map(|(id, owner)| {
                    all.iter().find(|o| &o.key == owner).map(|o| Victim {
                        key: o.key.clone(),
                        resource_version: o.resource_version.clone(),
                        id: id.clone(),
                    })
                })
                .collect();
            if victims.is_empty() {
                Step::Report(verdict)
            } else {
                Step::Evict { victims, verdict }
            }
        }
        Some(Blocked::LimitReached { occupants }) => report(
            Reason::LimitReached,
            format!("server {}: {occupants}; nothing may be evicted", srv.server),
            Requeue::Slow,
        ),
        None => report(
            Reason::Pending,
            "waiting for its turn on the server",
            Requeue::Poll,
        ),
    }
}

/// Every listed object as a slot, plus a slot for each neighbour's create in flight (an
/// intent, or a create this process is sending with the lock let go) that the listing does
/// not show yet; and the slots already being freed.
pub fn slots(
    subject: Option<&ObjectView>,
    srv: &ServerFacts,
    carries: fn(&str, &Item) -> bool,
) -> (Vec<Slot>, BTreeSet<String>) {
    let mut everyone: Vec<&ObjectView> = srv.neighbours.iter().collect();
    everyone.extend(subject);
    let mut owners: Vec<(String, &ObjectView)> = Vec::new();
    for o in &everyone {
        let others: Vec<ObjectView> = everyone
            .iter()
            .filter(|x| x.key != o.key)
            .map(|x| (*x).clone())
            .collect();
        if let Ownership::Found(item, _) = ownership(o, &srv.listing.items, &others, carries) {
            owners.push((item.id, o));
        }
    }
    let owner_of = |id: &str| owners.iter().find(|(i, _)| i == id).map(|(_, o)| *o);
    let owner_of_item = |item: &Item| {
        if item.automatic {
            None
        } else {
            owner_of(&item.id)
        }
    };
    let evicted =
        |item: &Item| owner_of_item(item).is_some_and(|o| o.phase == Some(Phase::Evicted));
    let going_anyway = |item: &Item| {
        item.state == RemoteState::Gone
            || srv.deleting.contains(&item.id)
            || owner_of_item(item)
                .is_some_and(|o| o.deleting && o.deletion_policy == DeletionPolicy::Delete)
    };
    // An eviction was planned beside another completed restore point, but that one may have
    // gone since (its user deleted it while the eviction was unfinished): an evicted, completed
    // object is then held — its slot stays taken — until another completes.
    let other_point_stays = srv
        .listing
        .items
        .iter()
        .any(|i| i.state == RemoteState::Ready && !going_anyway(i) && !evicted(i));
    let mut leaving = BTreeSet::new();
    let mut slots = Vec::new();
    for item in &srv.listing.items {
        let owner = owner_of_item(item);
        let held = item.state == RemoteState::Ready && !other_point_stays;
        let going = going_anyway(item) || (evicted(item) && !held);
        if going {
            leaving.insert(item.id.clone());
        }
        slots.push(Slot {
            id: item.id.clone(),
            created_at: item.created_at,
            state: match item.state {
                RemoteState::Ready => SlotState::Completed,
                RemoteState::Failed | RemoteState::Gone => SlotState::Failed,
                RemoteState::Pending => SlotState::InProgress,
                RemoteState::Unknown => SlotState::Unknown,
            },
            owner: match owner {
                None => Owner::Foreign,
                Some(o) => Owner::Declared {
                    key: o.key.clone(),
                    pinned: o.pinned,
                    evictable: o.evictable
                        && !o.pinned
                        && !o.deleting
                        && o.phase != Some(Phase::Evicted)
                        && !o.restore_source,
                },
            },
        });
    }
    for n in &srv.neighbours {
        let unlisted = !owners.iter().any(|(_, o)| o.key == n.key);
        // A create whose id is already recorded may not be listed yet either: the provider
        // counts it at once but lists it late. One seen complete, failed or evicted was listed
        // already: absent now, it is gone.
        let settled = matches!(n.phase, Some(Phase::Ready | Phase::Failed | Phase::Evicted));
        let flying = (n.import_id.is_none() && !settled && live_intent(n, srv))
            || srv.reserved.contains(&n.key);
        if unlisted && flying {
            slots.push(Slot {
                id: format!("in-flight:{}", n.key),
                created_at: n.intent,
                state: SlotState::InProgress,
                owner: Owner::Declared {
                    key: n.key.clone(),
                    pinned: false,
                    evictable: false,
                },
            });
        }
    }
    (slots, leaving)
}

/// The declared objects that still need a create, the subject among them.
fn wants(f: &Facts, srv: &ServerFacts) -> Vec<Want> {
    let mut wants = vec![Want {
        key: f.subject.view.key.clone(),
        declared_at: f.subject.view.declared_at,
    }];
    for n in &srv.neighbours {
        let waiting = !srv.reserved.contains(&n.key)
            && n.provider_id.is_none()
            && n.import_id.is_none()
            && !n.deleting
            && !matches!(n.phase, Some(Phase::Evicted | Phase::Failed))
            && !matches!(
                n.reason,
                Some(Reason::NameConflict | Reason::AmbiguousMarker)
            )
            && !live_intent(n, srv)
            && matches!(
                ownership(n, &srv.listing.items, &[], f.carries),
                Ownership::None
            );
        if waiting {
            wants.push(Want {
                key: n.key.clone(),
                declared_at: n.declared_at,
            });
        }
    }
    wants
}

/// After a create call: what its answer means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CreateAnswer {
    Made(Item),
    /// Accepted; the provider gave nothing back.
    Accepted,
    /// No answer: it may or may not have been made.
    Unknown(String),
    LimitReached(String),
    RateLimited(Option<Duration>),
    ServerNotFound,
    Rejected(String),
}

/// The status a create's answer leads to (`f` with the intent just recorded).
pub fn after_create(f: &Facts, answer: &CreateAnswer, deadline: Duration) -> Verdict {
    let v = |reason, message: String, requeue| Verdict::new(reason, message, requeue);
    match answer {
        CreateAnswer::Made(item) => tracked(f, item.clone(), deadline),
        CreateAnswer::Accepted => v(
            Reason::Creating,
            "create accepted; waiting for the provider to list it".into(),
            Requeue::Poll,
        ),
        CreateAnswer::Unknown(e) => v(
            Reason::CreateOutcomeUnknown,
            format!("create may or may not have taken effect ({e}); listing before any retry"),
            Requeue::Poll,
        ),
        CreateAnswer::LimitReached(m) => v(
            Reason::LimitReached,
            format!("the provider refused the create: {m}"),
            Requeue::Slow,
        ),
        CreateAnswer::RateLimited(after) => v(
            Reason::RateLimited,
            "the provider asked vpsnap to slow down; nothing was created".into(),
            Requeue::After(after.unwrap_or(Duration::from_secs(5))),
        ),
        CreateAnswer::ServerNotFound => v(
            Reason::ServerNotFound,
            format!(
                "spec.serverId {} does not exist at the provider (404)",
                f.server_label()
            ),
            Requeue::Never,
        ),
        CreateAnswer::Rejected(m) => v(
            Reason::CreateRejected,
            format!("the provider rejected the create: {m}"),
            Requeue::Never,
        ),
    }
}

impl Facts {
    fn server_label(&self) -> String {
        self.server
            .as_ref()
            .map(|s| s.server.to_string())
            .unwrap_or_default()
    }
}

/// The next step for an object being deleted (it carries the finalizer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CleanupStep {
    List,
    /// Nothing can be decided yet (the provider is not judged): look again later, write nothing.
    Wait,
    /// Remove the finalizer; `retained`: the provider object left in place.
    Release {
        retained: Option<String>,
    },
    /// Stay, saying why.
    Hold(Verdict),
    /// Delete the provider object (through the mass-deletion breaker), then release.
    Delete {
        id: String,
    },
}

pub fn decide_cleanup(f: &Facts) -> CleanupStep {
    let v = &f.subject.view;
    if v.deletion_policy == DeletionPolicy::Retain {
        return CleanupStep::Release {
            retained: v.provider_id.clone(),
        };
    }
    // No create was ever sent for it (the intent is recorded before one is) and it names no
    // provider object: nothing to look for. Objects carry the finalizer from admission, so
    // this is most deletions of objects that never got to the provider.
    if v.provider_id.is_none() && v.import_id.is_none() && v.intent.is_none() {
        return CleanupStep::Release { retained: None };
    }
    match &f.provider {
        // Nothing of this kind ever reached the provider.
        ProviderFacts::Unsupported { .. } => return CleanupStep::Release { retained: None },
        ProviderFacts::Unjudged => return CleanupStep::Wait,
        ProviderFacts::Missing { name } | ProviderFacts::NotReady { name, .. } => {
            return CleanupStep::Hold(Verdict::new(
                Reason::DeletionBlocked,
                format!(
                    "cannot delete at the provider: VpsProvider {name:?} is missing or not Ready; the object stays until it is (or set deletionPolicy: Retain)"
                ),
                Requeue::Slow,
            ));
        }
        ProviderFacts::Ready { .. } => {}
    }
    let Some(srv) = &f.server else {
        return CleanupStep::List;
    };
    match ownership(v, &srv.listing.items, &srv.neighbours, f.carries) {
        Ownership::Found(item, _) if item.state == RemoteState::Gone => {
            CleanupStep::Release { retained: None }
        }
        Ownership::Found(item, _) => CleanupStep::Delete { id: item.id },
        Ownership::Ambiguous(ids) => CleanupStep::Hold(Verdict::new(
            Reason::AmbiguousMarker,
            format!(
                "{}s {} all carry this object's marker; vpsnap deletes none of them. Delete them at the provider by hand, or set deletionPolicy: Retain",
                f.noun,
                ids.join(", ")
            ),
            Requeue::Slow,
        )),
        Ownership::None if !srv.listing.complete => CleanupStep::Hold(Verdict::new(
            Reason::DeletionPending,
            format!(
                "the provider listed server {} only in part; waiting for a complete listing before deciding nothing is left to delete",
                srv.server
            ),
            Requeue::Poll,
        )),
        Ownership::None if live_intent(v, srv) => CleanupStep::Hold(Verdict::new(
            Reason::DeletionPending,
            "a create sent for this object may still appear at the provider; waiting for it so it can be deleted too",
            Requeue::Poll,
        )),
        Ownership::None => CleanupStep::Release { retained: None },
    }
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
