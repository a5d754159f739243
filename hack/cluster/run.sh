#!/usr/bin/env bash
# Runs a hermetic one-node Kubernetes cluster built from source, runs a
# command against it, and removes everything on exit.
#
#   hack/cluster/run.sh [COMMAND [ARG...]]
#
# Without a command it waits until interrupted (for poking at the cluster with
# the printed KUBECONFIG). The command runs with these variables set:
#
#   KUBECONFIG              cluster-admin kubeconfig
#   CLUSTER_DIR             the cluster's work directory (logs under logs/)
#   CLUSTER_HOST_IP         the bridge address: apiserver, and where test
#                           servers listen so that pods can reach them
#   CLUSTER_POD_CIDR        the pods' subnet on that bridge
#   CLUSTER_NODE            the node name
#   CLUSTER_MANAGER_IMAGE   the operator image (make image), imported
#   CLUSTER_BUSYBOX_IMAGE   a busybox image for test pods, imported
#
# Pieces: etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# kube-proxy (iptables mode) and a kubelet, all built from k8s.io/kubernetes
# through the Go module proxy; containerd, runc and the CNI plugins from
# Debian (installed when missing). Needs root.
#
# Network: etcd and every health/metrics port listen on 127.0.0.1; the
# apiserver listens on the address of a bridge this script creates, which is
# also the pods' gateway (bridge CNI). kube-proxy maps the kubernetes Service
# to it, so in-cluster clients work unchanged. Pods cannot reach other hosts:
# the bridge's forwarded traffic is dropped.
#
# Cleanup (also on failure or interrupt): pods deleted, every process stopped
# by PID, mounts under the work directory unmounted, the bridge, network
# namespaces, iptables chains and kubepods cgroups removed, and the sysctls
# the kubelet, kube-proxy and the CNI plugin change restored.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
KUBE_VERSION="$(awk '$1=="require" && $2=="k8s.io/kubernetes" {sub(/^v/,"",$3); print $3}' "$ROOT/hack/tools/kube/go.mod")"

BRIDGE=clr-br0
HOST_IP=10.244.77.1
POD_CIDR=10.244.77.0/24
SERVICE_CIDR=10.96.0.0/24
SERVICE_IP=10.96.0.1
APISERVER_PORT=6443
ETCD_CLIENT_PORT=32379
ETCD_PEER_PORT=32380
NODE="$(hostname | tr '[:upper:]' '[:lower:]')"
MANAGER_IMAGE=clearance.local/clearance-operator:dev
BUSYBOX_IMAGE=clearance.local/busybox:1
PAUSE_IMAGE=clearance.local/pause:1
FORWARD_CHAIN=CLEARANCE-CLUSTER-FWD
# The sysctls the kubelet (unless protectKernelDefaults), kube-proxy and the
# bridge CNI plugin may change; restored on exit.
SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes net.ipv4.ip_forward
  net.ipv4.conf.all.forwarding net.ipv4.conf.all.route_localnet net.ipv6.conf.all.forwarding)

log() { echo "cluster: $*" >&2; }
die() {
  log "$*"
  exit 1
}

[[ $(id -u) == 0 ]] || die "needs root (containerd, the kubelet and the bridge)"
[[ -d /sys/fs/cgroup/memory ]] || log "warning: no cgroup v1 memory hierarchy; this script was made for cgroup v1 machines"

# One cluster per machine: the bridge, ports and iptables chains are fixed.
exec {LOCK_FD}>/run/clearance-cluster.lock
flock -n "$LOCK_FD" || die "another cluster is running (/run/clearance-cluster.lock)"
ip link show "$BRIDGE" &>/dev/null && die "bridge $BRIDGE exists: a previous run did not clean up"

install_packages() {
  local missing=()
  command -v containerd >/dev/null || missing+=(containerd)
  command -v runc >/dev/null || missing+=(runc)
  [[ -x /usr/lib/cni/bridge ]] || missing+=(containernetworking-plugins)
  command -v iptables >/dev/null || missing+=(iptables)
  dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'install ok installed' || missing+=(busybox-static)
  if ((${#missing[@]})); then
    log "installing ${missing[*]} from Debian"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}
install_packages

W="$(mktemp -d /tmp/clearance-cluster.XXXXXX)"
chmod 0755 "$W"
mkdir -p "$W/logs" "$W/pki" "$W/images" "$W/cni-conf"
log "work directory $W"
export KUBECONFIG="$W/admin.kubeconfig"
KUBE_BIN="" NODE_BIN=""

# What cleanup restores or removes: the host's state before this run.
declare -A PIDS=()
declare -A SYSCTL_BEFORE=()
for s in "${SYSCTLS[@]}"; do
  SYSCTL_BEFORE[$s]="$(sysctl -n "$s" 2>/dev/null || true)"
done
NETNS_BEFORE="$(ls /run/netns 2>/dev/null || true)"
ROOT_PROPAGATION="$(findmnt -n -o PROPAGATION /)"
# Shared places containerd and the CNI plugins create when missing.
CNI_CACHE_EXISTED="$([[ -e /var/lib/cni ]] && echo yes || true)"
CONTAINERD_RUN_EXISTED="$([[ -e /run/containerd ]] && echo yes || true)"
TOUCHED_HOST=""

# start NAME CMD...: runs a component in the background, logging to logs/NAME.log.
start() {
  local name="$1"
  shift
  "$@" >"$W/logs/$name.log" 2>&1 &
  PIDS[$name]=$!
}

# stop NAME: SIGTERM, then SIGKILL if it lingers.
stop() {
  local name="$1" pid="${PIDS[$1]:-}"
  [[ -n $pid ]] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 200); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
  unset "PIDS[$name]"
}

# wait_for WHAT SECONDS CMD...: polls CMD until it succeeds.
wait_for() {
  local what="$1" secs="$2"
  shift 2
  for _ in $(seq $((secs * 5))); do
    if "$@" &>/dev/null; then
      return 0
    fi
    sleep 0.2
  done
  die "$what not ready after ${secs}s (logs in $W/logs)"
}

cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  log "cleaning up"
  # Controllers first, so nothing recreates the pods; then the pods, with
  # the kubelet still running so it tears down their netns, veths and mounts.
  stop kube-controller-manager
  stop kube-scheduler
  if [[ -n ${PIDS[kubelet]:-} && -n ${PIDS[kube-apiserver]:-} ]]; then
    timeout 90 "$KUBECTL" delete pods --all --all-namespaces --grace-period=5 --wait=true &>/dev/null
  fi
  stop kube-proxy
  stop kubelet
  if [[ -n ${PIDS[containerd]:-} ]]; then
    local ctr=(ctr -a "$W/containerd.sock" -n k8s.io)
    for c in $("${ctr[@]}" tasks ls -q 2>/dev/null); do "${ctr[@]}" tasks kill -s SIGKILL "$c" &>/dev/null; done
    sleep 1
    for c in $("${ctr[@]}" tasks ls -q 2>/dev/null); do "${ctr[@]}" tasks rm -f "$c" &>/dev/null; done
    for c in $("${ctr[@]}" containers ls -q 2>/dev/null); do "${ctr[@]}" containers rm "$c" &>/dev/null; done
  fi
  for name in containerd kube-apiserver etcd; do
    stop "$name"
  done
  # Shims outlive containerd; ours name its socket, under the work directory.
  for pid in $(pgrep -f "containerd-shim-runc-v2 .*$W/containerd.sock" || true); do
    kill -KILL "$pid" 2>/dev/null
  done
  # Any component still running (none, unless a stop above was skipped).
  for name in "${!PIDS[@]}"; do
    stop "$name"
  done
  # Deepest mounts first: secret tmpfs and overlay rootfs, then the kubelet's self bind mount.
  findmnt -rn -o TARGET | grep -F "$W/" | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m"
  done
  for ns in $(ls /run/netns 2>/dev/null); do
    if [[ $ns == cni-* ]] && ! grep -qxF "$ns" <<<"$NETNS_BEFORE"; then
      ip netns delete "$ns" 2>/dev/null
    fi
  done
  if [[ -z $TOUCHED_HOST ]]; then
    rm -rf "$W"
    exit "$rc"
  fi
  [[ $ROOT_PROPAGATION == private ]] && mount --make-rprivate /
  ip link del "$BRIDGE" 2>/dev/null
  find /var/log/containers -maxdepth 1 -lname "$W/*" -delete 2>/dev/null
  [[ -z $CNI_CACHE_EXISTED ]] && rm -rf /var/lib/cni
  # Shim sockets live under /run/containerd/s whatever the state directory.
  [[ -z $CONTAINERD_RUN_EXISTED ]] && rm -rf /run/containerd
  [[ -x $NODE_BIN/kube-proxy ]] && "$NODE_BIN/kube-proxy" --cleanup &>"$W/logs/kube-proxy-cleanup.log"
  clean_iptables
  for s in "${SYSCTLS[@]}"; do
    if [[ -n ${SYSCTL_BEFORE[$s]} && "$(sysctl -n "$s" 2>/dev/null)" != "${SYSCTL_BEFORE[$s]}" ]]; then
      sysctl -q -w "$s=${SYSCTL_BEFORE[$s]}"
    fi
  done
  for top in /sys/fs/cgroup/*/kubepods; do
    [[ -d $top ]] && find "$top" -depth -type d -exec rmdir {} + 2>/dev/null
  done
  if ((rc != 0)) || [[ -n ${CLUSTER_KEEP:-} ]]; then
    log "logs kept in $W/logs"
    find "$W" -mindepth 1 -maxdepth 1 ! -name logs -exec rm -rf {} +
  else
    rm -rf "$W"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# clean_iptables: the kubelet's chains and ours (kube-proxy --cleanup removes its own).
clean_iptables() {
  local ipt table chain
  for ipt in iptables ip6tables; do
    $ipt -D FORWARD -j "$FORWARD_CHAIN" 2>/dev/null
    $ipt -F "$FORWARD_CHAIN" 2>/dev/null && $ipt -X "$FORWARD_CHAIN" 2>/dev/null
    for hook in INPUT OUTPUT; do
      while $ipt -D "$hook" -j KUBE-FIREWALL 2>/dev/null; do :; done
    done
    for table in filter nat mangle; do
      for chain in KUBE-FIREWALL KUBE-KUBELET-CANARY KUBE-IPTABLES-HINT KUBE-PROXY-CANARY; do
        $ipt -t "$table" -F "$chain" 2>/dev/null && $ipt -t "$table" -X "$chain" 2>/dev/null
      done
    done
  done
  return 0
}

# Build everything before touching the host.
KUBE_BIN="$("$ROOT/hack/build-envtest-assets.sh")"
NODE_BIN="$("$ROOT/hack/build-cluster-assets.sh")"
"$ROOT/hack/build-image.sh" manager "$W/images/manager.tar" >&2
"$ROOT/hack/build-image.sh" busybox "$W/images/busybox.tar" >&2
"$ROOT/hack/build-image.sh" pause "$W/images/pause.tar" >&2
KUBECTL="$KUBE_BIN/kubectl"

# Refuse to share iptables with another Kubernetes: cleanup would remove its chains.
if iptables-save 2>/dev/null | grep -q '^:KUBE-'; then
  die "iptables already has KUBE-* chains; is another Kubernetes running here?"
fi

### Network: the bridge exists before the apiserver binds to its address.
TOUCHED_HOST=yes
ip link add "$BRIDGE" type bridge
ip addr add "$HOST_IP/${POD_CIDR#*/}" dev "$BRIDGE"
ip link set "$BRIDGE" up
# The CNI plugin enables forwarding for its gateway; nothing from the bridge
# may leave this machine, and nothing may come in to it.
for ipt in iptables ip6tables; do
  $ipt -N "$FORWARD_CHAIN"
  $ipt -A "$FORWARD_CHAIN" -i "$BRIDGE" -j DROP
  $ipt -A "$FORWARD_CHAIN" -o "$BRIDGE" -j DROP
  $ipt -I FORWARD 1 -j "$FORWARD_CHAIN"
done
cat >"$W/cni-conf/10-clearance.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "clearance-pods",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$HOST_IP"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$W/cni-ipam"
      }
    }
  ]
}
EOF
echo "nameserver 127.0.0.1" >"$W/resolv.conf"

### PKI: one CA; ECDSA keys because they are quick to generate.
pki() { openssl "$@" 2>>"$W/logs/openssl.log"; }
P="$W/pki"
pki ecparam -name prime256v1 -genkey -noout -out "$P/ca.key"
pki req -x509 -new -key "$P/ca.key" -subj "/CN=clearance-cluster-ca" -days 2 -out "$P/ca.crt"
# cert NAME SUBJECT [SAN]: a key and a certificate signed by the CA.
cert() {
  local name="$1" subj="$2" san="${3:-}" ext="$P/$1.ext"
  pki ecparam -name prime256v1 -genkey -noout -out "$P/$name.key"
  pki req -new -key "$P/$name.key" -subj "$subj" -out "$P/$name.csr"
  if [[ -n $san ]]; then
    printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\n' "$san" >"$ext"
  else
    printf 'extendedKeyUsage=clientAuth\n' >"$ext"
  fi
  pki x509 -req -in "$P/$name.csr" -CA "$P/ca.crt" -CAkey "$P/ca.key" -CAcreateserial -days 2 -extfile "$ext" -out "$P/$name.crt"
}
cert apiserver "/CN=kube-apiserver" "IP:$HOST_IP,IP:$SERVICE_IP,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
cert admin "/O=system:masters/CN=cluster-admin"
cert apiserver-kubelet "/O=system:masters/CN=kube-apiserver-kubelet-client"
cert kubelet "/O=system:nodes/CN=system:node:$NODE"
cert kcm "/CN=system:kube-controller-manager"
cert scheduler "/CN=system:kube-scheduler"
cert proxy "/CN=system:kube-proxy"
pki ecparam -name prime256v1 -genkey -noout -out "$P/sa.key"
pki ec -in "$P/sa.key" -pubout -out "$P/sa.pub"

# kubeconfig NAME: a kubeconfig for the client certificate NAME.
kubeconfig() {
  local name="$1"
  cat >"$W/$name.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: cluster
  cluster:
    server: https://$HOST_IP:$APISERVER_PORT
    certificate-authority: $P/ca.crt
users:
- name: $name
  user:
    client-certificate: $P/$name.crt
    client-key: $P/$name.key
contexts:
- name: $name
  context: {cluster: cluster, user: $name}
current-context: $name
EOF
}
for k in admin kubelet kcm scheduler proxy; do kubeconfig "$k"; done

### Control plane.
start etcd "$KUBE_BIN/etcd" --data-dir "$W/etcd-data" --unsafe-no-fsync \
  --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster "default=http://127.0.0.1:$ETCD_PEER_PORT"
start kube-apiserver "$KUBE_BIN/kube-apiserver" \
  --etcd-servers "http://127.0.0.1:$ETCD_CLIENT_PORT" \
  --bind-address "$HOST_IP" --advertise-address "$HOST_IP" --secure-port "$APISERVER_PORT" \
  --tls-cert-file "$P/apiserver.crt" --tls-private-key-file "$P/apiserver.key" --client-ca-file "$P/ca.crt" \
  --service-account-issuer https://kubernetes.default.svc --service-account-key-file "$P/sa.pub" \
  --service-account-signing-key-file "$P/sa.key" --service-cluster-ip-range "$SERVICE_CIDR" \
  --authorization-mode Node,RBAC --kubelet-client-certificate "$P/apiserver-kubelet.crt" \
  --kubelet-client-key "$P/apiserver-kubelet.key" --kubelet-preferred-address-types Hostname \
  --enable-admission-plugins NodeRestriction
wait_for kube-apiserver 120 "$KUBECTL" get --raw /readyz

start kube-controller-manager "$NODE_BIN/kube-controller-manager" \
  --kubeconfig "$W/kcm.kubeconfig" --authentication-kubeconfig "$W/kcm.kubeconfig" \
  --authorization-kubeconfig "$W/kcm.kubeconfig" --bind-address 127.0.0.1 --secure-port 0 \
  --leader-elect=false --use-service-account-credentials=true \
  --service-account-private-key-file "$P/sa.key" --root-ca-file "$P/ca.crt" \
  --cluster-signing-cert-file "$P/ca.crt" --cluster-signing-key-file "$P/ca.key" \
  --controllers '*,-nodeipam' --allocate-node-cidrs=false
start kube-scheduler "$NODE_BIN/kube-scheduler" \
  --kubeconfig "$W/scheduler.kubeconfig" --authentication-kubeconfig "$W/scheduler.kubeconfig" \
  --authorization-kubeconfig "$W/scheduler.kubeconfig" --bind-address 127.0.0.1 --secure-port 0 --leader-elect=false

### containerd with its own root, state and socket.
cat >"$W/containerd.toml" <<EOF
version = 2
root = "$W/containerd-root"
state = "$W/containerd-state"
[grpc]
  address = "$W/containerd.sock"
[ttrpc]
  address = "$W/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$W/containerd-opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # No CAP_SYS_RESOURCE here: negative oom_score_adj values are refused.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$W/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$W/cni-conf"
EOF
start containerd containerd --config "$W/containerd.toml"
CTR=(ctr -a "$W/containerd.sock" -n k8s.io)
wait_for containerd 60 "${CTR[@]}" version
for img in pause busybox manager; do
  "${CTR[@]}" images import --all-platforms "$W/images/$img.tar" >>"$W/logs/ctr-import.log"
done
for ref in "$PAUSE_IMAGE" "$BUSYBOX_IMAGE" "$MANAGER_IMAGE"; do
  "${CTR[@]}" images check "name==$ref" | grep -q complete || die "image $ref was not imported (see $W/logs/ctr-import.log)"
done

### kubelet: the node.
# Shared mount propagation lets the kubelet's volume mounts reach containers.
mount --make-rshared /
cat >"$W/kubelet-config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
containerRuntimeEndpoint: unix://$W/containerd.sock
imageServiceEndpoint: unix://$W/containerd.sock
cgroupDriver: cgroupfs
# Recent kubelets refuse cgroup v1 unless told otherwise.
failCgroupV1: false
# The default, a negative score, needs CAP_SYS_RESOURCE.
oomScoreAdj: 0
failSwapOn: false
protectKernelDefaults: false
resolvConf: $W/resolv.conf
podLogsDir: $W/pod-logs
syncFrequency: 10s
configMapAndSecretChangeDetectionStrategy: Watch
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $P/ca.crt}
authorization: {mode: AlwaysAllow}
# Imported images cannot be pulled again: never collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
EOF
start kubelet "$NODE_BIN/kubelet" --config "$W/kubelet-config.yaml" --kubeconfig "$W/kubelet.kubeconfig" \
  --root-dir "$W/kubelet-root" --cert-dir "$W/kubelet-pki" --hostname-override "$NODE" --v=2

### kube-proxy: the kubernetes Service reaches the apiserver on the bridge.
cat >"$W/kube-proxy-config.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection:
  kubeconfig: $W/proxy.kubeconfig
hostnameOverride: $NODE
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
clusterCIDR: $POD_CIDR
nodePortAddresses: ["$HOST_IP/32"]
iptables:
  # Else it sets net.ipv4.conf.all.route_localnet.
  localhostNodePorts: false
# Zero leaves the conntrack sysctls as they are.
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
EOF
start kube-proxy "$NODE_BIN/kube-proxy" --config "$W/kube-proxy-config.yaml"

node_ready() {
  [[ "$("$KUBECTL" get node "$NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" == True ]]
}
wait_for "node $NODE" 120 node_ready
wait_for "default ServiceAccount" 60 "$KUBECTL" get serviceaccount default
log "node $NODE is Ready; KUBECONFIG=$KUBECONFIG"

export CLUSTER_DIR="$W" CLUSTER_HOST_IP="$HOST_IP" CLUSTER_POD_CIDR="$POD_CIDR" CLUSTER_NODE="$NODE" \
  CLUSTER_MANAGER_IMAGE="$MANAGER_IMAGE" CLUSTER_BUSYBOX_IMAGE="$BUSYBOX_IMAGE"
if (($#)); then
  "$@"
else
  log "running until interrupted"
  start idle sleep infinity
  wait "${PIDS[idle]}"
fi
