# Shared by the project's scripts; source it from the repository root.

step() { printf '\n==> %s\n' "$*"; }

# Starts a fresh control plane in a temporary directory, stopped and removed whenever the
# calling script exits (also on Ctrl-C or TERM). Sets $cp_state; its kubeconfig is
# "$cp_state/kubeconfig".
throwaway_control_plane() {
  cp_state=$(mktemp -d "${TMPDIR:-/tmp}/vpsnap-cp.XXXXXX")
  trap 'scripts/control-plane.sh down "$cp_state" || true; rm -rf "$cp_state"' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  step "start control plane"
  scripts/control-plane.sh up "$cp_state" >/dev/null
}
