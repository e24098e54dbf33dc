//! Two replicas never act twice: a leader frozen mid-create or mid-restore (SIGSTOP for longer
//! than its lease) is replaced, and once thawed sends nothing more and exits. Real kube-apiserver, two
//! operator processes with leader election, the simulator over HTTP.
mod support;

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use serde_json::json;
use support::*;
use vpsnap::api::{VpsProvider, VpsRestore, VpsSnapshot};
use vpsnap::sim::Faults;

const T: Duration = Duration::from_secs(60);

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt("vpsnap-leader")
        .await
        .ok()
        .flatten()?
        .spec?
        .holder_identity
}

async fn wait_holder(leases: &Api<Lease>, who: &str) {
    let start = std::time::Instant::now();
    while holder(leases).await.as_deref() != Some(who) {
        assert!(start.elapsed() < T, "{who} never held the lease");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Provider calls `replica` sent from position `from` of the simulator's log on.
fn calls_by(sim: &vpsnap::sim::SimHandle, replica: &str, from: u64) -> Vec<String> {
    let agent = format!("({replica})");
    sim.call_log(from)
        .into_iter()
        .filter(|c| c.user_agent.as_deref().is_some_and(|a| a.contains(&agent)))
        .map(|c| format!("{} {}", c.at, c.endpoint))
        .collect()
}

/// Replica a leads, replica b stands by, and provider `acct` (the simulator) is Ready.
async fn leader_and_standby(
    ns: &TestNamespace,
    sim: &vpsnap::sim::SimHandle,
) -> (Operator, Operator, Api<Lease>) {
    let args = fast_lease(&ns.name);
    let leases: Api<Lease> = ns.api();
    let a = Operator::start_named(&ns.name, "replica-a", &args, None).await;
    wait_holder(&leases, "replica-a").await;
    let b = Operator::start_named(&ns.name, "replica-b", &args, None).await;

    ns.secret("acct-credentials", &[("token", "good-token")])
        .await;
    apply(
        &ns.api::<VpsProvider>(),
        json!({"metadata": {"name": "acct"}, "spec": {
        "type": "VpsRest", "endpoint": sim.vps_rest_url(),
        "credentialsSecretRef": {"name": "acct-credentials"}, "pollInterval": "1s"}}),
    )
    .await;
    wait_for(&ns.api::<VpsProvider>(), "acct", T, |p: &VpsProvider| {
        has_condition(p, "Ready", "True", None)
    })
    .await;
    (a, b, leases)
}

/// Freezes the leader `a` (SIGSTOP) once the simulator holds the answer to its request, so
/// that the request was performed but the leader never heard of it. The provider stops
/// holding answers for the new leader.
async fn freeze_while_held(sim: &vpsnap::sim::SimHandle, a: &Operator) {
    assert!(
        sim.wait_for(T, |s| s.held_answers() == 1).await,
        "no request reached the provider"
    );
    signal(a, "STOP");
    sim.set_faults(Faults::default());
}

/// Thawed, the old leader finds its lease gone: it exits, having sent nothing since the thaw.
/// Counted from the thaw, not the freeze: a request the leader wrote just before SIGSTOP may
/// reach the simulator's log after the freeze was signalled (seen once, a credential check
/// under a loaded machine), and a stopped process sends nothing.
async fn thaw_and_see_it_exit(sim: &vpsnap::sim::SimHandle, mut a: Operator) {
    let thawed_from = sim.call_log(0).len() as u64;
    signal(&a, "CONT");
    let exited = tokio::time::timeout(T, a.child.wait()).await;
    assert!(
        matches!(exited, Ok(Ok(status)) if !status.success()),
        "the old leader kept running: {exited:?}"
    );
    assert_eq!(
        calls_by(sim, "replica-a", thawed_from),
        Vec::<String>::new(),
        "the old leader called the provider after it was thawed"
    );
}

fn hold_every_answer() -> Faults {
    Faults {
        hold_create_rate: 1.0,
        hold_create_for: Duration::from_secs(120),
        ..Faults::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_frozen_mid_create_is_replaced_and_sends_nothing_after_it_thaws() {
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "freeze").await;
    let sim = simulator(sim_config(&[950])).await;
    let (a, b, leases) = leader_and_standby(&ns, &sim).await;

    // The provider makes the snapshot at once and holds the answer: freeze the leader while
    // it waits for it, for several lease durations.
    sim.set_faults(hold_every_answer());
    apply(
        &ns.api::<VpsSnapshot>(),
        json!({"metadata": {"name": "s"}, "spec": {
        "providerRef": {"name": "acct"}, "serverId": 950}}),
    )
    .await;
    freeze_while_held(&sim, &a).await;

    // The standby takes over and adopts the snapshot instead of making a second one.
    wait_holder(&leases, "replica-b").await;
    wait_for(&ns.api::<VpsSnapshot>(), "s", T * 2, |o: &VpsSnapshot| {
        has_condition(o, "Ready", "True", None)
    })
    .await;

    thaw_and_see_it_exit(&sim, a).await;
    let creates = sim.record().creates;
    assert_eq!(creates.len(), 1, "{creates:?}");
    assert!(
        !calls_by(&sim, "replica-b", 0).is_empty(),
        "the new leader works"
    );
    b.kill().await;
    ns.delete().await;
}

/// The same for a restore: the provider accepted it while the leader was frozen; the new
/// leader sees the request marker and never calls again (OutcomeUnknown), the old one exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_frozen_mid_restore_is_replaced_and_the_restore_is_called_once() {
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "freeze-restore").await;
    let sim = simulator(sim_config(&[951])).await;
    let (a, b, leases) = leader_and_standby(&ns, &sim).await;
    apply(
        &ns.api::<VpsSnapshot>(),
        json!({"metadata": {"name": "src"}, "spec": {
        "providerRef": {"name": "acct"}, "serverId": 951}}),
    )
    .await;
    wait_for(&ns.api::<VpsSnapshot>(), "src", T, |o: &VpsSnapshot| {
        has_condition(o, "Ready", "True", None)
    })
    .await;

    sim.set_faults(hold_every_answer());
    apply(
        &ns.api::<VpsRestore>(),
        json!({"metadata": {"name": "r"}, "spec": {
        "providerRef": {"name": "acct"}, "serverId": 951,
        "source": {"snapshotRef": {"name": "src"}}, "acknowledgeDataLoss": true}}),
    )
    .await;
    freeze_while_held(&sim, &a).await;

    wait_holder(&leases, "replica-b").await;
    wait_for(&ns.api::<VpsRestore>(), "r", T * 2, |r: &VpsRestore| {
        has_condition(r, "Succeeded", "False", Some("OutcomeUnknown"))
    })
    .await;
    thaw_and_see_it_exit(&sim, a).await;
    let restores = sim.record().restores;
    assert_eq!(restores.len(), 1, "{restores:?}");
    assert!(restores[0].accepted, "{restores:?}");
    b.kill().await;
    ns.delete().await;
}

/// An old leader cut off from the apiserver (it can still reach the provider) stops calling
/// the provider once it cannot renew its lease, and exits; the standby takes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_the_apiserver_stops_calling_the_provider() {
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "partition").await;
    // Snapshots stay in progress, so their leader keeps polling the provider.
    let sim = simulator(vpsnap::sim::SimConfig {
        create_delay: Duration::from_secs(600),
        ..sim_config(&[960])
    })
    .await;
    let partition = Partition::new().await;
    let args = fast_lease(&ns.name);
    let leases: Api<Lease> = ns.api();
    let mut a = Operator::start_named(
        &ns.name,
        "replica-a",
        &args,
        Some(partition.kubeconfig.clone()),
    )
    .await;
    wait_holder(&leases, "replica-a").await;
    let b = Operator::start_named(&ns.name, "replica-b", &args, None).await;
    ns.secret("acct-credentials", &[("token", "good-token")])
        .await;
    apply(
        &ns.api::<VpsProvider>(),
        json!({"metadata": {"name": "acct"}, "spec": {
        "type": "VpsRest", "endpoint": sim.vps_rest_url(),
        "credentialsSecretRef": {"name": "acct-credentials"}, "pollInterval": "1s"}}),
    )
    .await;
    apply(
        &ns.api::<VpsSnapshot>(),
        json!({"metadata": {"name": "s"}, "spec": {
        "providerRef": {"name": "acct"}, "serverId": 960}}),
    )
    .await;
    assert!(sim.wait_for(T, |s| s.record().creates.len() == 1).await);

    partition.cut();
    wait_holder(&leases, "replica-b").await;
    let taken_over = sim.call_log(0).len() as u64;
    // The new leader takes up the polling; the old one must be silent by now, and gone.
    let lists = calls(&sim, "vps_rest.snapshots.list");
    assert!(
        sim.wait_for(T, |s| calls(s, "vps_rest.snapshots.list") >= lists + 3)
            .await
    );
    assert_eq!(
        calls_by(&sim, "replica-a", taken_over),
        Vec::<String>::new(),
        "the cut-off leader kept calling the provider after the standby took over"
    );
    let exited = tokio::time::timeout(T, a.child.wait()).await;
    assert!(
        matches!(exited, Ok(Ok(status)) if !status.success()),
        "the cut-off leader kept running: {exited:?}"
    );
    assert_eq!(sim.record().creates.len(), 1);
    b.kill().await;
    ns.delete().await;
}
