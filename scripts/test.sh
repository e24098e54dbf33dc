#!/usr/bin/env bash
# Every check and test of the project: formatting, lints, unit tests, and the integration tests
# against a real kube-apiserver/etcd/kube-controller-manager built from their Go modules
# (first run builds them, ~15-25 min on 2 cores; cached under ~/.cache/vpsnap afterwards), plus
# promtool and prometheus-operator's API types for the chart's monitoring objects (first run
# ~5-8 min, cached likewise).
# The control plane is started on 127.0.0.1 for this run and always stopped at the end.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

. scripts/lib.sh

step "cargo fmt --check"
cargo fmt --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings

step "cargo clippy --all-targets --features otel -- -D warnings"
cargo clippy --all-targets --locked --features otel -- -D warnings

step "without the otel feature the binary has no OpenTelemetry dependency"
if cargo tree --locked -e normal,build --prefix none | grep -i opentelemetry; then
  echo "FAIL: a default build depends on OpenTelemetry (it must stay behind the otel feature)" >&2
  exit 1
fi
echo "none"

step "control plane binaries (cached)"
bin=$(scripts/build-control-plane.sh)
echo "$bin"

step "monitoring tools: promtool, strictcheck, monitoring.coreos.com CRDs (cached)"
export VPSNAP_TEST_MONITORING_DIR=$(scripts/build-monitoring-tools.sh)
echo "$VPSNAP_TEST_MONITORING_DIR"

throwaway_control_plane
export VPSNAP_TEST_KUBECONFIG="$cp_state/kubeconfig"
export VPSNAP_TEST_BIN_DIR="$bin"
echo "kubeconfig: $VPSNAP_TEST_KUBECONFIG"

step "generated manifests are in sync"
scripts/check-manifests.sh

step "cargo test (unit + integration)"
cargo test --locked --all-targets --no-fail-fast -- --test-threads "${VPSNAP_TEST_THREADS:-4}"

step "cargo test --features otel --test traces (OTLP export received in-process)"
cargo test --locked --features otel --test traces

step "benchmark and chaos smoke runs (figures printed; hard rules enforced)"
scripts/bench-smoke.sh
