use super::*;
use crate::sim::{DeleteRecord, RefusedCreate, RestoreRecord, ServerRecord, SimApi};
use kube::api::DynamicObject;
use serde_json::{Value, json};

const UID: &str = "0b7c1e2a-1111-2222-3333-444455556666";

fn at(s: i64) -> Timestamp {
    Timestamp::from_second(1_767_225_600 + s).expect("ts")
}

fn caller(instance: &str) -> Caller {
    Caller {
        call: Some(1),
        user_agent: Some(format!("vpsnap/0.1.0 ({instance})")),
    }
}

fn object(kind: &str, name: &str, uid: &str, spec: Value, status: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "vpsnap.dev/v1alpha1", "kind": kind,
        "metadata": {"name": name, "namespace": "ns", "uid": uid},
        "spec": spec, "status": status,
    }))
    .expect("object")
}

/// Records an object of `kind` as the watch would see it at time 0.
fn seen(h: &mut History, kind: &str, name: &str, uid: &str, spec: Value, status: Value) {
    h.observe(kind, &object(kind, name, uid, spec, status), at(0));
}

fn create(
    seq: u64,
    kind: ObjectKind,
    id: u64,
    name: Option<&str>,
    desc: Option<&str>,
) -> CreateRecord {
    CreateRecord {
        seq,
        at: at(seq as i64),
        api: SimApi::VpsRest,
        kind,
        server: 101,
        id,
        name: name.map(str::to_string),
        description: desc.map(str::to_string),
        response_lost: false,
        answer_held_ms: None,
        requested_description: None,
        foreign: false,
        caller: caller("chaos-a-1"),
    }
}

fn delete(seq: u64, kind: ObjectKind, id: u64, foreign: bool) -> DeleteRecord {
    DeleteRecord {
        seq,
        at: at(seq as i64),
        api: SimApi::VpsRest,
        kind,
        server: 101,
        id,
        name: None,
        description: None,
        foreign,
        backup_type: None,
        caller: caller("chaos-b-1"),
    }
}

fn never_completed(_: Kind, _: u64, _: Timestamp, _: Timestamp) -> bool {
    false
}

fn run(
    record: &Record,
    history: &History,
    deleted: &HashMap<(Kind, String), Timestamp>,
) -> Vec<Finding> {
    check(&Inputs {
        record,
        calls: &[],
        history,
        deleted_by_harness: deleted,
        completed: &never_completed,
        limits: Limits {
            snapshots: 5,
            backups: 10,
        },
    })
}

fn only(findings: &[Finding], invariant: Invariant) -> Vec<&Finding> {
    findings
        .iter()
        .filter(|f| f.invariant == invariant)
        .collect()
}

#[test]
fn derived_names_follow_the_operator_rule() {
    assert_eq!(derived_snapshot_name("s-1", UID), "s-1-0b7c1e2a");
    assert_eq!(derived_snapshot_name("a.b", "12-34"), "a-b-1234");
    assert_eq!(backup_tag("nightly [vpsnap:abc] x"), Some("[vpsnap:abc]"));
    assert_eq!(backup_tag("nightly [vpsnap:ab"), None);
    assert_eq!(instance(&caller("chaos-b-2")), "chaos-b-2");
    assert_eq!(instance(&Caller::default()), "-");
}

#[test]
fn two_creates_for_one_object_are_a_duplicate_by_name_or_tag() {
    let mut h = History::default();
    seen(
        &mut h,
        "VpsSnapshot",
        "s-1",
        UID,
        json!({"serverId": 101}),
        json!({}),
    );
    seen(
        &mut h,
        "VpsBackup",
        "b-1",
        "buid",
        json!({"serverId": 101}),
        json!({}),
    );
    let mut cut = create(3, ObjectKind::Backup, 501, None, Some("chaos b-1 [vpsn"));
    cut.requested_description = Some("chaos b-1 [vpsnap:buid]".into());
    let record = Record {
        creates: vec![
            create(1, ObjectKind::Snapshot, 801, Some("s-1-0b7c1e2a"), None),
            create(2, ObjectKind::Snapshot, 802, Some("s-1-0b7c1e2a"), None),
            cut.clone(),
            CreateRecord {
                seq: 4,
                id: 502,
                ..cut
            },
        ],
        ..Record::default()
    };
    let findings = run(&record, &h, &HashMap::new());
    let mut dups = only(&findings, Invariant::DuplicateCreate);
    dups.sort_by_key(|f| f.object.clone());
    assert_eq!(dups.len(), 2, "{findings:?}");
    assert_eq!(
        dups[0].object.as_ref().map(|o| o.name.as_str()),
        Some("b-1")
    );
    assert_eq!(
        dups[1].object.as_ref().map(|o| o.name.as_str()),
        Some("s-1")
    );
    assert!(
        dups[1].detail.contains("801 by chaos-a-1"),
        "{}",
        dups[1].detail
    );
    assert!(only(&findings, Invariant::UnattributedCreate).is_empty());
    assert_eq!(counts(&findings)[&Invariant::DuplicateCreate], 2);
}

#[test]
fn a_backup_without_its_tag_is_claimed_by_status_id_or_counted() {
    let mut h = History::default();
    seen(
        &mut h,
        "VpsBackup",
        "b-1",
        "buid",
        json!({"serverId": 101}),
        json!({"providerId": "501"}),
    );
    let record = Record {
        creates: vec![
            create(1, ObjectKind::Backup, 501, None, Some("chaos b-1 [vpsn")),
            create(2, ObjectKind::Backup, 502, None, Some("chaos b-1 [vpsn")),
        ],
        ..Record::default()
    };
    let findings = run(&record, &h, &HashMap::new());
    let unclaimed = only(&findings, Invariant::UnattributedCreate);
    assert_eq!(unclaimed.len(), 1, "{findings:?}");
    assert!(unclaimed[0].detail.contains("backup 502"));
    // No marker whole, so no duplicate can be told apart: the unclaimed one is the finding.
    assert!(only(&findings, Invariant::DuplicateCreate).is_empty());
}

#[test]
fn limit_refusals_and_high_water_are_violations() {
    let mut h = History::default();
    seen(
        &mut h,
        "VpsSnapshot",
        "s-2",
        UID,
        json!({"snapshotName": "chaos-s-2"}),
        json!({}),
    );
    let mut record = Record::default();
    record.limit_refusals.push(RefusedCreate {
        seq: 1,
        at: at(1),
        api: SimApi::VpsRest,
        kind: ObjectKind::Snapshot,
        server: 101,
        name: Some("chaos-s-2".into()),
        description: None,
        limit: 5,
        caller: caller("chaos-b-3"),
    });
    record.servers.insert(
        101,
        ServerRecord {
            snapshots_high_water: 6,
            ..ServerRecord::default()
        },
    );
    let findings = run(&record, &h, &HashMap::new());
    let refused = only(&findings, Invariant::LimitRefusal);
    assert_eq!(refused.len(), 1);
    assert_eq!(
        refused[0].object.as_ref().map(|o| o.name.as_str()),
        Some("s-2")
    );
    assert!(refused[0].detail.contains("chaos-b-3"));
    assert_eq!(only(&findings, Invariant::OverLimit).len(), 1);
}

fn restore_record(seq: u64, id: u64, accepted: bool, who: &str) -> RestoreRecord {
    RestoreRecord {
        seq,
        at: at(seq as i64),
        kind: ObjectKind::Snapshot,
        server: Some(101),
        object_id: id,
        accepted,
        reason: if accepted {
            String::new()
        } else {
            "restoring".into()
        },
        caller: caller(who),
    }
}

#[test]
fn every_restore_call_beyond_one_counts_accepted_or_not() {
    let mut h = History::default();
    seen(
        &mut h,
        "VpsSnapshot",
        "s-1",
        UID,
        json!({}),
        json!({"providerId": "801"}),
    );
    // The restore never recorded the source id itself: the source's status names it.
    seen(
        &mut h,
        "VpsRestore",
        "r-1",
        "r",
        json!({"source": {"snapshotRef": {"name": "s-1"}}}),
        json!({}),
    );
    let record = Record {
        restores: vec![
            restore_record(1, 801, true, "chaos-a-1"),
            restore_record(2, 801, false, "chaos-b-1"),
            restore_record(3, 999, true, "chaos-b-1"),
        ],
        ..Record::default()
    };
    let findings = run(&record, &h, &HashMap::new());
    let extra = only(&findings, Invariant::ExtraRestoreCall);
    assert_eq!(extra.len(), 1, "{findings:?}");
    assert_eq!(extra[0].count, 1);
    assert!(extra[0].detail.contains("refused by chaos-b-1"));
    let unasked = only(&findings, Invariant::UnaskedRestoreCall);
    assert_eq!(unasked.len(), 1);
    assert!(unasked[0].detail.contains("999"));
}

#[test]
fn deletions_of_foreign_pinned_retained_and_last_points() {
    let mut h = History::default();
    for (name, uid, pinned, evictable, policy, id) in [
        ("pinned", "u1", true, false, "Delete", "801"),
        ("kept", "u2", false, true, "Retain", "802"),
        ("last", "u3", false, true, "Delete", "803"),
    ] {
        let spec = json!({"serverId": 101, "pinned": pinned, "evictable": evictable, "deletionPolicy": policy});
        seen(
            &mut h,
            "VpsSnapshot",
            name,
            uid,
            spec,
            json!({"providerId": id}),
        );
    }
    let record = Record {
        creates: vec![
            create(1, ObjectKind::Snapshot, 801, Some("x"), None),
            create(2, ObjectKind::Snapshot, 802, Some("y"), None),
            create(3, ObjectKind::Snapshot, 803, Some("z"), None),
        ],
        deletes: vec![
            delete(10, ObjectKind::Snapshot, 801, false),
            delete(11, ObjectKind::Snapshot, 802, false),
            delete(12, ObjectKind::Snapshot, 803, false),
            delete(13, ObjectKind::Backup, 777, true),
        ],
        ..Record::default()
    };
    let deleted = HashMap::from([((Kind::Snapshot, "kept".to_string()), at(5))]);
    let completed = |_: Kind, id: u64, _: Timestamp, _: Timestamp| id == 803;
    let findings = check(&Inputs {
        record: &record,
        calls: &[],
        history: &h,
        deleted_by_harness: &deleted,
        completed: &completed,
        limits: Limits {
            snapshots: 5,
            backups: 10,
        },
    });
    let names = |i| {
        only(&findings, i)
            .iter()
            .filter_map(|f| f.object.as_ref().map(|o| o.name.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(names(Invariant::PinnedDeleted), ["pinned"]);
    assert_eq!(names(Invariant::NotEvictableDeleted), ["pinned"]);
    assert_eq!(names(Invariant::RetainedDeleted), ["kept"]);
    assert_eq!(names(Invariant::LastPointDeleted), ["last"]);
    assert_eq!(only(&findings, Invariant::ForeignDeleted).len(), 1);
}

/// GC evicts an evictable Retain object (marked Evicted first); the user deletes the object
/// before the eviction's provider delete went out: that delete is the eviction's, not a
/// Retain object's provider object deleted on request.
#[test]
fn an_eviction_finishing_after_a_deletion_request_is_judged_as_an_eviction() {
    let mut h = History::default();
    let spec = json!({"serverId": 101, "evictable": true, "deletionPolicy": "Retain"});
    for (name, uid, id, evicted) in [("evicted", "u1", "801", true), ("kept", "u2", "802", false)] {
        seen(
            &mut h,
            "VpsSnapshot",
            name,
            uid,
            spec.clone(),
            json!({"providerId": id}),
        );
        if evicted {
            let status = json!({"providerId": id, "phase": "Evicted"});
            let obj = object("VpsSnapshot", name, uid, spec.clone(), status);
            h.observe("VpsSnapshot", &obj, at(4));
        }
    }
    let record = Record {
        creates: vec![
            create(1, ObjectKind::Snapshot, 801, Some("x"), None),
            create(2, ObjectKind::Snapshot, 802, Some("y"), None),
        ],
        deletes: vec![
            delete(10, ObjectKind::Snapshot, 801, false),
            delete(11, ObjectKind::Snapshot, 802, false),
        ],
        ..Record::default()
    };
    let deleted = HashMap::from([
        ((Kind::Snapshot, "evicted".to_string()), at(5)),
        ((Kind::Snapshot, "kept".to_string()), at(5)),
    ]);
    let findings = run(&record, &h, &deleted);
    let retained: Vec<_> = only(&findings, Invariant::RetainedDeleted)
        .iter()
        .filter_map(|f| f.object.as_ref().map(|o| o.name.clone()))
        .collect();
    assert_eq!(retained, ["kept"]);
}

#[test]
fn evidence_lists_calls_and_status_in_time_order_with_the_process() {
    let mut h = History::default();
    h.observe(
        "VpsSnapshot",
        &object(
            "VpsSnapshot",
            "s-1",
            UID,
            json!({}),
            json!({"phase": "Evicted", "providerId": "801"}),
        ),
        at(1),
    );
    h.observe(
        "VpsSnapshot",
        &object(
            "VpsSnapshot",
            "s-1",
            UID,
            json!({}),
            json!({"phase": "Creating"}),
        ),
        at(6),
    );
    let mut lost = create(0, ObjectKind::Snapshot, 801, Some("s-1-0b7c1e2a"), None);
    lost.response_lost = true;
    let record = Record {
        creates: vec![
            lost,
            create(7, ObjectKind::Snapshot, 802, Some("s-1-0b7c1e2a"), None),
        ],
        deletes: vec![delete(3, ObjectKind::Snapshot, 801, false)],
        ..Record::default()
    };
    let findings = run(&record, &h, &HashMap::new());
    assert_eq!(only(&findings, Invariant::LeftTerminal).len(), 1);
    let evidence = Evidence::new(&record, &h);
    let lines = evidence.lines(&ObjectRef {
        kind: "VpsSnapshot".into(),
        name: "s-1".into(),
    });
    assert_eq!(lines.len(), 5, "{lines:#?}");
    assert!(lines[0].ends_with("create snapshot 801 on server 101 by chaos-a-1 (answer lost)"));
    assert!(lines[1].contains("status: phase Evicted"));
    assert!(lines[2].ends_with("delete snapshot 801 by chaos-b-1"));
    assert!(lines[3].contains("status: phase Creating"));
    assert!(lines[4].contains("create snapshot 802"));
}

fn call(n: u64, endpoint: &str, who: &str) -> crate::sim::CallRecord {
    crate::sim::CallRecord {
        n,
        at: at(n as i64),
        api: SimApi::VpsRest,
        endpoint: endpoint.into(),
        user_agent: caller(who).user_agent,
        fault: None,
    }
}

#[test]
fn a_change_from_a_process_after_its_successor_took_over_is_split_brain() {
    let calls = vec![
        call(0, "vps_rest.snapshots.create", "chaos-a-1"),
        call(1, "vps_rest.snapshots.list", "chaos-b-1"),
        call(2, "vps_rest.backups.create", "chaos-b-1"),
        // Lists are harmless; a create by the retired process is not.
        call(3, "vps_rest.snapshots.list", "chaos-a-1"),
        call(4, "vps_rest.snapshots.delete", "chaos-a-1"),
        call(5, "vps_rest.servers.restore", "chaos-b-1"),
        call(6, "vps_rest.snapshots.create", "chaos-a-2"),
        call(7, "vps_rest.snapshots.create", "chaos-b-1"),
    ];
    let findings = check(&Inputs {
        record: &Record::default(),
        calls: &calls,
        history: &History::default(),
        deleted_by_harness: &HashMap::new(),
        completed: &never_completed,
        limits: Limits {
            snapshots: 5,
            backups: 10,
        },
    });
    let split = only(&findings, Invariant::InterleavedMutations);
    assert_eq!(split.len(), 2, "{findings:?}");
    assert!(
        split[0]
            .detail
            .starts_with("call 4 vps_rest.snapshots.delete by chaos-a-1")
    );
    assert!(split[0].detail.contains("after chaos-b-1 took over"));
    assert!(
        split[1]
            .detail
            .starts_with("call 7 vps_rest.snapshots.create by chaos-b-1")
    );
}
