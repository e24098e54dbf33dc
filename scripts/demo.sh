#!/usr/bin/env bash
# Runs vpsnap end to end on the embedded default: a local control plane (built once from the
# Go module proxy and cached), the provider simulator, the operator, and examples/.
# Leaves everything running until Ctrl-C, then stops exactly what it started.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

state=${VPSNAP_DEMO_DIR:-${TMPDIR:-/tmp}/vpsnap-demo}
sim_port=${VPSNAP_SIM_PORT:-8080}
metrics_port=${VPSNAP_METRICS_PORT:-9090}
mkdir -p "$state"
pids=()
cleanup() {
  trap - EXIT INT TERM
  echo
  echo "stopping the operator, the simulator and the control plane"
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  scripts/control-plane.sh down "$state/cluster" || true
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "==> building vpsnap and the kubectl plugin"
cargo build --quiet --bin vpsnap --bin kubectl-vpsnap
target=${CARGO_TARGET_DIR:-target}
vpsnap=$target/debug/vpsnap
# kubectl finds plugins on PATH as kubectl-<name>.
plugin_dir=$(cd "$target/debug" && pwd)

echo "==> starting the control plane (first run builds it: ~15-25 min, cached afterwards)"
kubeconfig=$(scripts/control-plane.sh up "$state/cluster")
bin=$(cat "$state/cluster/bin")
kubectl() { "$bin/kubectl" --kubeconfig "$kubeconfig" "$@"; }
export KUBECONFIG="$kubeconfig"

echo "==> installing the CRDs"
kubectl apply --server-side -f deploy/crds/ >/dev/null
kubectl wait --for=condition=Established crd --all --timeout=60s >/dev/null
# As the chart installs it: snapshots and backups are born with their cleanup finalizer.
"$bin/helm" template vpsnap charts/vpsnap --show-only templates/admission-policy.yaml \
  | kubectl apply --server-side -f - >/dev/null

echo "==> starting the provider simulator on 127.0.0.1:$sim_port"
"$vpsnap" sim --listen "127.0.0.1:$sim_port" --servers 12345,5203773 --create-delay 3s \
  > "$state/simulator.log" 2>&1 &
pids+=($!)

echo "==> starting the operator (logs: $state/operator.log)"
"$vpsnap" controller --metrics-addr "127.0.0.1:$metrics_port" > "$state/operator.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 60); do
  curl -sf "http://127.0.0.1:$metrics_port/readyz" >/dev/null 2>&1 && break
  sleep 0.5
done

echo "==> applying examples/"
for f in examples/*.yaml; do
  sed "s#127.0.0.1:8080#127.0.0.1:$sim_port#" "$f" | kubectl apply -f -
done

echo "==> waiting for the snapshots to become Ready"
kubectl wait --for=condition=Ready vpssnapshot,vpsbackup --all --timeout=120s
kubectl wait --for=condition=Succeeded vpsrestore --all --timeout=120s
kubectl get vpsproviders,vpssnapshots,vpsbackups,vpssnapshotschedules,vpsrestores -o wide

cat <<MSG

vpsnap is running. In another shell:
  export KUBECONFIG=$kubeconfig PATH=$bin:$plugin_dir:\$PATH
  kubectl get vpss -w                   # snapshots (also: vpsb, vpsp, vpso, events)
  curl -s 127.0.0.1:$sim_port/_sim/state   # what the simulated provider holds
  curl -s 127.0.0.1:$metrics_port/metrics  # operator metrics

The kubectl plugin (kubectl vpsnap --help for more):
  kubectl vpsnap snapshot 12345 --provider vps-rest --pin --wait
  kubectl vpsnap servers                # what fills each server, what GC evicts next
  kubectl vpsnap servers --server 12345
  kubectl vpsnap why vpss/pre-upgrade   # conditions, Events, plan, next step
  kubectl vpsnap run nightly --wait     # one schedule run now
  kubectl vpsnap retention nightly      # what retention keeps, by which rule
  kubectl vpsnap restore 12345 --from-snapshot pre-upgrade --safety-snapshot
Press Ctrl-C to stop everything.
MSG
wait "${pids[@]}"
