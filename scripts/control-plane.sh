#!/usr/bin/env bash
# Starts or stops a throw-away Kubernetes control plane (etcd, kube-apiserver,
# kube-controller-manager) on 127.0.0.1 with free ports and a fresh PKI.
#
#   scripts/control-plane.sh up DIR     start; writes DIR/kubeconfig and DIR/pids; prints DIR/kubeconfig
#   scripts/control-plane.sh down DIR   stop exactly the processes recorded in DIR/pids
#
# Binaries come from scripts/build-control-plane.sh (built once, cached outside the repo).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

stop() {
  local dir=$1
  [ -f "$dir/pids" ] || return 0
  # Reverse order: controller-manager and apiserver before etcd.
  local pids
  pids=$(tac "$dir/pids" | awk '{print $1}')
  for pid in $pids; do kill -TERM "$pid" 2>/dev/null || true; done
  for _ in $(seq 1 50); do
    local alive=0
    for pid in $pids; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.2
  done
  for pid in $pids; do kill -KILL "$pid" 2>/dev/null || true; done
  rm -f "$dir/pids"
}

start() {
  local dir=$1
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  local bin
  bin=$("$here/build-control-plane.sh")
  local pki="$dir/pki"
  # Always a fresh cluster: stale etcd data would resurrect objects from an earlier run.
  rm -rf "$dir/etcd" "$pki"
  mkdir -p "$pki" "$dir/logs"

  # Throw-away PKI: a CA, the apiserver's serving certificate, a service-account key pair.
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=vpsnap-test-ca" \
    -keyout "$pki/ca.key" -out "$pki/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
    -keyout "$pki/apiserver.key" -out "$pki/apiserver.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\n' > "$pki/san.ext"
  openssl x509 -req -in "$pki/apiserver.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
    -CAcreateserial -days 2 -extfile "$pki/san.ext" -out "$pki/apiserver.crt" 2>/dev/null
  openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
  local token
  token=$(openssl rand -hex 24)
  printf '%s,admin,admin,system:masters\n' "$token" > "$pki/tokens.csv"

  local etcd_port peer_port api_port
  etcd_port=$(free_port); peer_port=$(free_port); api_port=$(free_port)
  : > "$dir/pids"

  "$bin/etcd" --name test --data-dir "$dir/etcd" --unsafe-no-fsync \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "test=http://127.0.0.1:$peer_port" --log-level warn \
    > "$dir/logs/etcd.log" 2>&1 &
  echo "$! etcd" >> "$dir/pids"

  "$bin/kube-apiserver" --etcd-servers "http://127.0.0.1:$etcd_port" \
    --secure-port "$api_port" --bind-address 127.0.0.1 \
    --endpoint-reconciler-type none --advertise-address 192.0.2.1 \
    --client-ca-file "$pki/ca.crt" --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --token-auth-file "$pki/tokens.csv" --authorization-mode RBAC \
    --service-account-issuer "https://127.0.0.1:$api_port/" \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --service-cluster-ip-range 10.0.0.0/24 --allow-privileged=true \
    --disable-admission-plugins ServiceAccount \
    > "$dir/logs/kube-apiserver.log" 2>&1 &
  echo "$! kube-apiserver" >> "$dir/pids"

  local ca_data
  ca_data=$(base64 -w0 < "$pki/ca.crt")
  cat > "$dir/kubeconfig" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: vpsnap-test
  cluster:
    server: https://127.0.0.1:$api_port
    certificate-authority-data: $ca_data
users:
- name: admin
  user:
    token: $token
contexts:
- name: vpsnap-test
  context: {cluster: vpsnap-test, user: admin, namespace: default}
current-context: vpsnap-test
KUBECONFIG

  local ready=0
  for _ in $(seq 1 240); do
    if "$bin/kubectl" --kubeconfig "$dir/kubeconfig" get --raw /readyz >/dev/null 2>&1 &&
       "$bin/kubectl" --kubeconfig "$dir/kubeconfig" get namespace default >/dev/null 2>&1; then
      ready=1; break
    fi
    if ! kill -0 "$(awk '/kube-apiserver/ {print $1}' "$dir/pids")" 2>/dev/null; then
      echo "kube-apiserver exited; last log lines:" >&2; tail -20 "$dir/logs/kube-apiserver.log" >&2
      stop "$dir"; exit 1
    fi
    sleep 0.5
  done
  if [ $ready != 1 ]; then
    echo "kube-apiserver did not become ready in 120s; see $dir/logs" >&2
    stop "$dir"; exit 1
  fi

  "$bin/kube-controller-manager" --kubeconfig "$dir/kubeconfig" \
    --authentication-kubeconfig "$dir/kubeconfig" --authorization-kubeconfig "$dir/kubeconfig" \
    --controllers garbage-collector-controller,namespace-controller,serviceaccount-controller,clusterrole-aggregation-controller,serviceaccount-token-controller \
    --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
    --leader-elect=false --use-service-account-credentials=false \
    --secure-port 0 \
    > "$dir/logs/kube-controller-manager.log" 2>&1 &
  echo "$! kube-controller-manager" >> "$dir/pids"

  echo "$bin" > "$dir/bin"
  echo "$dir/kubeconfig"
}

case "${1:-}" in
  up) start "${2:?usage: $0 up DIR}" ;;
  down) stop "${2:?usage: $0 down DIR}" ;;
  *) echo "usage: $0 up|down DIR" >&2; exit 2 ;;
esac
