#!/usr/bin/env bash
# Smoke runs of the two measuring programs, so they never rot:
#   vpsnap-bench --smoke              (≈ 50 servers × 4 objects, every phase, < 2 min)
#   vpsnap-chaos --smoke --replicas 2 --seed 7
#                                     (a few hundred objects, faults incl. the provider's quirks,
#                                      kills and a leader handover, a leader freeze past its
#                                      lease; < 2 min)
# Each exits non-zero when a hard rule or an invariant is broken; this script fails if either does.
#
# Control plane: the one of $VPSNAP_TEST_KUBECONFIG when set (e.g. from scripts/test.sh), else a
# throw-away one started here with scripts/control-plane.sh and always stopped at the end.
# VPSNAP_BENCH_PROFILE=release builds optimised binaries (figures closer to production).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

. scripts/lib.sh

profile=${VPSNAP_BENCH_PROFILE:-debug}
build_flags=(--locked --bin vpsnap --bin vpsnap-bench --bin vpsnap-chaos)
if [ "$profile" = release ]; then build_flags+=(--release); fi

step "cargo build ($profile): vpsnap, vpsnap-bench, vpsnap-chaos"
cargo build "${build_flags[@]}"
bin="${CARGO_TARGET_DIR:-target}/$profile"

if [ -n "${VPSNAP_TEST_KUBECONFIG:-}" ]; then
  kubeconfig=$VPSNAP_TEST_KUBECONFIG
  echo "reusing the control plane of $kubeconfig"
else
  throwaway_control_plane
  kubeconfig="$cp_state/kubeconfig"
fi

failed=0
step "vpsnap-bench --smoke"
timeout 300 "$bin/vpsnap-bench" --smoke --kubeconfig "$kubeconfig" || failed=1
step "vpsnap-chaos --smoke --replicas 2 --seed 7"
timeout 300 "$bin/vpsnap-chaos" --smoke --replicas 2 --seed 7 --kubeconfig "$kubeconfig" || failed=1

if [ $failed != 0 ]; then
  echo "bench smoke: FAILED (see the tables above)" >&2
  exit 1
fi
echo "bench smoke: passed"
