#!/usr/bin/env bash
# Every check and test of the project: formatting, lints, unit tests, and the integration tests
# against a real kube-apiserver/etcd/kube-controller-manager built from their Go modules
# (first run builds them, ~15-25 min on 2 cores; cached under ~/.cache/vpsnap afterwards).
# The control plane is started on 127.0.0.1 for this run and always stopped at the end.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

. scripts/lib.sh

step "cargo fmt --check"
cargo fmt --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings

step "control plane binaries (cached)"
bin=$(scripts/build-control-plane.sh)
echo "$bin"

throwaway_control_plane
export VPSNAP_TEST_KUBECONFIG="$cp_state/kubeconfig"
export VPSNAP_TEST_BIN_DIR="$bin"
echo "kubeconfig: $VPSNAP_TEST_KUBECONFIG"

step "generated manifests are in sync"
scripts/check-manifests.sh

step "cargo test (unit + integration)"
cargo test --locked --all-targets --no-fail-fast -- --test-threads "${VPSNAP_TEST_THREADS:-4}"

step "benchmark and chaos smoke runs (figures printed; hard rules enforced)"
scripts/bench-smoke.sh
