#!/usr/bin/env bash
# A real one-node Kubernetes on this machine, built from source (issue 13).
#
#   scripts/cluster.sh build    build/cache every binary (Go module proxy + Debian), idempotent
#   scripts/cluster.sh up       build, then start etcd, the control plane, containerd, kubelet, kube-proxy
#                               (and scripts/images.sh / cluster/router/router.sh when present); prints timings
#   scripts/cluster.sh down     stop everything by PID and restore the host as it was before `up`
#   scripts/cluster.sh status   exit 0 only when every process runs, the apiserver is ready and the node Ready
#   scripts/cluster.sh env      print `export KUBECONFIG=...` etc. for `eval "$(scripts/cluster.sh env)"`
#   scripts/cluster.sh check-disk  exit 1 with the figures when the disk under the state is too full for
#                               the kubelet (below AIC_MIN_FREE_DISK_PERCENT, default 8 %); `up` checks it too
#
# Pins: cluster/versions.env. Binaries: ~/.cache/active-immune-core/cluster-<hash>/ (outside the repo).
# Runtime state and logs: ~/.local/state/active-immune-core/cluster/. Nothing listens beyond 127.0.0.1 and
# the cluster bridge; nothing is masqueraded; a FORWARD rule drops whatever leaves the bridge for an
# address outside the pod/service ranges. There is no cluster DNS: workloads get Service ClusterIPs.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=../cluster/versions.env
source "$ROOT/cluster/versions.env"

STATE=${AIC_CLUSTER_STATE:-$HOME/.local/state/active-immune-core/cluster}
LOGS=$STATE/logs
PIDS=$STATE/pids
PKI=$STATE/pki
KCFG=$STATE/kubeconfig
BEFORE=$STATE/host-before
CTRD_SOCK=$STATE/containerd/containerd.sock
# Short runtime dir for sockets (a unix socket path must stay under 108 bytes).
RUN_DIR=/run/aic-cluster
APISERVER=https://$CNI_BRIDGE_IP:$APISERVER_PORT
PAUSE_IMAGE=aic.local/pause:$KUBERNETES_VERSION
REGISTRY_ADDRESS=127.0.0.1:$IMAGES_REGISTRY_PORT
# Our egress guard chain (filter table). Chains we own or that kube-proxy/kubelet/CNI create are
# recognised by these prefixes when `down` cleans the tables.
EGRESS_CHAIN=AIC-EGRESS
OWNED_CHAINS_RE='^(KUBE-|CNI-|AIC-)'
# Sysctls that `up` (or kubelet/kube-proxy/the CNI bridge plugin) may change; `down` writes them back.
SYSCTLS=(net/ipv4/ip_forward net/bridge/bridge-nf-call-iptables net/bridge/bridge-nf-call-ip6tables
  net/ipv4/conf/all/route_localnet net/netfilter/nf_conntrack_max
  net/netfilter/nf_conntrack_tcp_timeout_established net/netfilter/nf_conntrack_tcp_timeout_close_wait
  vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops kernel/keys/root_maxkeys
  kernel/keys/root_maxbytes)
# Host directories the runtime may create outside $STATE (shim sockets, CNI netns and cache).
HOST_DIRS=(/run/containerd /run/netns /var/run/netns /var/lib/cni /run/aic-cluster /var/run/nri /run/nri)
K8S_CMDS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)

log() { printf '[cluster %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}'; }

# ---------------------------------------------------------------------------------------------- build
cache_dir() {
  # Keyed by the pins that change a binary: versions, Go toolchain, the wrapper modules' sums,
  # the etcd main and the archive packer (the pause image).
  local h
  h=$( {
    printf '%s\n' "$KUBERNETES_VERSION" "$KUBERNETES_STAGING_VERSION" "$ETCD_VERSION" "$CONTAINERD_VERSION"
    go env GOVERSION
    cat "$ROOT/cluster/k8s/go.sum" "$ROOT/cluster/etcd/go.sum" "$ROOT/cluster/etcd/main.go" \
      "$ROOT/cluster/containerd/go.sum" "$ROOT/cluster/oci_archive.py"
  } | sha256sum | cut -c1-16)
  echo "$HOME/.cache/active-immune-core/cluster-$h"
}

need_go() {
  command -v go >/dev/null || die "go not found (need >= $GO_MIN_VERSION)"
  local have
  have=$(go env GOVERSION | sed 's/^go//')
  [ "$(printf '%s\n%s\n' "$GO_MIN_VERSION" "$have" | sort -V | head -1)" = "$GO_MIN_VERSION" ] ||
    die "go $have is older than $GO_MIN_VERSION"
}

apt_packages() {
  local missing=() p
  for p in ${DEBIAN_PACKAGES_NODE//,/ }; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "apt-get install ${missing[*]}"
  apt-get -o DPkg::Lock::Timeout=900 install -y --no-install-recommends "${missing[@]}" >/dev/null ||
    { apt-get -o DPkg::Lock::Timeout=900 update >/dev/null &&
      apt-get -o DPkg::Lock::Timeout=900 install -y --no-install-recommends "${missing[@]}" >/dev/null; }
}

# A long build runs from a copy of the wrapper module: a git checkout or rebase of the work tree
# meanwhile (which briefly removes the directory) cannot break it.
module_copy() { # module_copy <bin dir> <module dir name under cluster/>; prints the copy's path
  local dst
  dst=$(dirname "$1")/src/$2
  rm -rf "$dst" && mkdir -p "$dst"
  cp "$ROOT/cluster/$2"/go.mod "$ROOT/cluster/$2"/go.sum "$dst/"
  cp "$ROOT/cluster/$2"/*.go "$dst/" 2>/dev/null || true
  echo "$dst"
}

build_k8s() {
  local bin=$1 c missing=0
  for c in "${K8S_CMDS[@]}"; do [ -x "$bin/$c" ] || missing=1; done
  [ $missing -eq 0 ] && return 0
  local minor=${KUBERNETES_VERSION#v1.}; minor=${minor%%.*}
  local ld="-s -w" p
  # Without these stamps the servers report v0.0.0-master and kubelet/apiserver version skew checks fail.
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $p.gitVersion=$KUBERNETES_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
    ld+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  local t0 pkgs=()
  for c in "${K8S_CMDS[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
  t0=$(now)
  log "go build ${K8S_CMDS[*]} (one invocation; cold ≈ 20+ min on 2 cores)"
  mkdir -p "$bin.k8s.tmp"
  (cd "$(module_copy "$bin" k8s)" && CGO_ENABLED=0 go build -trimpath -ldflags "$ld" -o "$bin.k8s.tmp/" "${pkgs[@]}")
  mv -f "$bin.k8s.tmp"/* "$bin/" && rmdir "$bin.k8s.tmp"
  log "kubernetes commands built in $(elapsed "$t0") s"
}

build_etcd() {
  local bin=$1
  [ -x "$bin/etcd" ] && return 0
  local t0; t0=$(now)
  (cd "$(module_copy "$bin" etcd)" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$bin/etcd.tmp" .)
  mv -f "$bin/etcd.tmp" "$bin/etcd"
  log "etcd built in $(elapsed "$t0") s"
}

build_containerd() {
  local bin=$1
  [ -x "$bin/containerd" ] && [ -x "$bin/containerd-shim-runc-v2" ] && [ -x "$bin/ctr" ] && return 0
  local t0 v=github.com/containerd/containerd/v2/version
  t0=$(now)
  mkdir -p "$bin.ctrd.tmp"
  # CGO off: static binaries, and the btrfs snapshotter (which needs cgo headers) is left out.
  (cd "$(module_copy "$bin" containerd)" && CGO_ENABLED=0 go build -trimpath \
    -ldflags "-s -w -X $v.Version=$CONTAINERD_VERSION -X $v.Package=github.com/containerd/containerd/v2" \
    -o "$bin.ctrd.tmp/" github.com/containerd/containerd/v2/cmd/containerd \
    github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 github.com/containerd/containerd/v2/cmd/ctr)
  mv -f "$bin.ctrd.tmp"/* "$bin/" && rmdir "$bin.ctrd.tmp"
  log "containerd built in $(elapsed "$t0") s"
}

build_pause() {
  local dir=$1
  [ -f "$dir/pause.tar" ] && return 0
  local src
  src=$(cd "$ROOT/cluster/k8s" && go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')/build/pause/linux/pause.c
  [ -f "$src" ] || die "pause.c not found at $src"
  gcc -Os -Wall -Werror -static -DVERSION="$KUBERNETES_VERSION" -o "$dir/pause" "$src"
  strip "$dir/pause"
  python3 "$ROOT/cluster/oci_archive.py" --name "$PAUSE_IMAGE" --entrypoint /pause --user 65535:65535 \
    --out "$dir/pause.tar" "$dir/pause=/pause"
}

cmd_build() {
  need_go
  apt_packages
  local dir t0
  dir=$(cache_dir)
  mkdir -p "$dir/bin"
  t0=$(now)
  # One builder at a time per cache dir (tests and test.sh may both call build).
  exec 9>"$dir/.lock"
  flock 9
  build_k8s "$dir/bin"
  build_etcd "$dir/bin"
  build_containerd "$dir/bin"
  build_pause "$dir"
  flock -u 9
  exec 9>&-
  log "build ready in $(elapsed "$t0") s: $dir"
}

# ------------------------------------------------------------------------------------- processes
# A PID file holds "<pid> <start time in clock ticks>" so a recycled PID is never signalled.
# A zombie (state Z: dead, not yet reaped by whoever inherited it) counts as gone.
proc_start_time() { awk '$3 != "Z" {print $22}' "/proc/$1/stat" 2>/dev/null; }

start_proc() {
  local name=$1; shift
  mkdir -p "$LOGS" "$PIDS"
  setsid "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
  local pid=$!
  echo "$pid $(proc_start_time "$pid")" >"$PIDS/$name.pid"
}

proc_alive() {
  local f=$PIDS/$1.pid pid st
  [ -f "$f" ] || return 1
  read -r pid st <"$f"
  [ -n "$pid" ] && [ "$(proc_start_time "$pid")" = "$st" ]
}

stop_proc() {
  local name=$1 f=$PIDS/$1.pid pid st i
  [ -f "$f" ] || return 0
  read -r pid st <"$f"
  if [ -n "$pid" ] && [ "$(proc_start_time "$pid")" = "$st" ]; then
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 100); do
      [ "$(proc_start_time "$pid")" = "$st" ] || break
      sleep 0.1
    done
    if [ "$(proc_start_time "$pid")" = "$st" ]; then kill -KILL "$pid" 2>/dev/null || true; sleep 0.2; fi
  fi
  rm -f "$f"
}

wait_for() { # wait_for <seconds> <description> <command...>
  local limit=$1 what=$2; shift 2
  local t0; t0=$(now)
  until "$@" >/dev/null 2>&1; do
    if awk -v a="$t0" -v b="$(now)" -v l="$limit" 'BEGIN{exit !(b-a>l)}'; then
      die "$what not ready after ${limit}s (logs: $LOGS)"
    fi
    sleep 0.1
  done
}

# ------------------------------------------------------------------------------------------- PKI
mkcert() { # mkcert <name> <CN> <O or -> <SANs or -> [ca-name]
  local name=$1 cn=$2 org=$3 sans=$4 ca=${5:-ca}
  [ -f "$PKI/$name.crt" ] && return 0
  local subj="/CN=$cn"
  [ "$org" != - ] && subj="/O=$org$subj"
  openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/$name.key" 2>/dev/null
  openssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    if [ "$sans" != - ]; then
      echo "extendedKeyUsage=serverAuth,clientAuth"
      echo "subjectAltName=$sans"
    else
      echo "extendedKeyUsage=clientAuth"
    fi
  } >"$PKI/$name.ext"
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/$ca.crt" -CAkey "$PKI/$ca.key" -CAcreateserial \
    -days 365 -sha256 -extfile "$PKI/$name.ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr" "$PKI/$name.ext"
}

mkca() {
  local name=$1 cn=$2
  [ -f "$PKI/$name.crt" ] && return 0
  openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/$name.key" 2>/dev/null
  openssl req -x509 -new -key "$PKI/$name.key" -subj "/CN=$cn" -days 3650 -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
    -out "$PKI/$name.crt" 2>/dev/null
}

kubeconfig() { # kubeconfig <file> <user> <cert-name>
  local file=$KCFG/$1.conf
  cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: $CLUSTER_NAME
  cluster:
    server: $APISERVER
    certificate-authority: $PKI/ca.crt
users:
- name: $2
  user:
    client-certificate: $PKI/$3.crt
    client-key: $PKI/$3.key
contexts:
- name: $CLUSTER_NAME
  context: {cluster: $CLUSTER_NAME, user: $2}
current-context: $CLUSTER_NAME
EOF
  chmod 600 "$file"
}

make_pki() {
  mkdir -p "$PKI" "$KCFG"
  chmod 700 "$PKI"
  mkca ca kubernetes-ca
  mkca front-proxy-ca front-proxy-ca
  mkca etcd-ca etcd-ca
  local svc_sans="DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc"
  svc_sans+=",DNS:kubernetes.default.svc.cluster.local,DNS:localhost,IP:127.0.0.1,IP:$CNI_BRIDGE_IP"
  svc_sans+=",IP:$APISERVER_SERVICE_IP"
  mkcert apiserver kube-apiserver - "$svc_sans"
  mkcert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters -
  mkcert admin kubernetes-admin system:masters -
  mkcert controller-manager system:kube-controller-manager - -
  mkcert scheduler system:kube-scheduler - -
  mkcert kube-proxy system:kube-proxy - -
  mkcert kubelet-client "system:node:$NODE_NAME" system:nodes -
  mkcert kubelet "system:node:$NODE_NAME" system:nodes "DNS:$NODE_NAME,IP:$CNI_BRIDGE_IP"
  mkcert front-proxy-client front-proxy-client - - front-proxy-ca
  mkcert etcd-server etcd-server - "DNS:localhost,IP:127.0.0.1" etcd-ca
  mkcert apiserver-etcd-client kube-apiserver-etcd-client - - etcd-ca
  if [ ! -f "$PKI/sa.key" ]; then
    openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/sa.key" 2>/dev/null
    openssl ec -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  fi
  kubeconfig admin kubernetes-admin admin
  kubeconfig controller-manager system:kube-controller-manager controller-manager
  kubeconfig scheduler system:kube-scheduler scheduler
  kubeconfig kube-proxy system:kube-proxy kube-proxy
  kubeconfig kubelet "system:node:$NODE_NAME" kubelet-client
}

# ------------------------------------------------------------------------------------ host snapshot
# What `down` must give back. Counters and our own chains are left out of the iptables snapshot so
# that `before` and `after` compare equal when the host is restored.
snapshot_host() { # snapshot_host <dir>
  local d=$1 t
  mkdir -p "$d"
  ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | sort >"$d/links"
  ip -o addr show | awk '{print $2, $3, $4}' | sort >"$d/addrs"
  ip route show table all | sort >"$d/routes"
  for t in filter nat mangle raw; do
    iptables-save -t "$t" 2>/dev/null | grep -v '^#' | sed 's/\[[0-9]*:[0-9]*\]//' >"$d/iptables-$t"
    ip6tables-save -t "$t" 2>/dev/null | grep -v '^#' | sed 's/\[[0-9]*:[0-9]*\]//' >"$d/ip6tables-$t"
  done
  awk '{print $5, $9}' /proc/self/mountinfo | sort >"$d/mounts"
  : >"$d/sysctls"
  for t in "${SYSCTLS[@]}"; do
    [ -e "/proc/sys/$t" ] && echo "$t $(tr '\t' ' ' <"/proc/sys/$t")" >>"$d/sysctls"
  done
  : >"$d/dirs"
  for t in "${HOST_DIRS[@]}"; do [ -e "$t" ] && echo "$t" >>"$d/dirs"; done
  ls /sys/fs/cgroup | sort >"$d/cgroup-hierarchies"
  true
}

# The cgroup parent for pods: the memory cgroup this script runs in (so pods stay inside whatever
# limits and lifecycle this session's sandbox has), applied as a path in every v1 hierarchy.
cgroup_root() {
  local p
  p=$(awk -F: '$2=="memory"{print $3}' /proc/self/cgroup)
  [ -z "$p" ] && p=/
  echo "${p%/}/aic"
}

cgroup_hierarchies() {
  local h
  for h in /sys/fs/cgroup/*; do
    [ -d "$h" ] && [ "$(basename "$h")" != unified ] && mountpoint -q "$h" && echo "$h"
  done
}

# ------------------------------------------------------------------------------------------- up
write_configs() {
  local bin=$1 croot=$2
  mkdir -p "$STATE/etc" "$STATE/cni/net.d" "$STATE/cni/ipam" "$STATE/containerd/certs.d/$REGISTRY_ADDRESS"
  cat >"$STATE/cni/net.d/10-$CLUSTER_NAME.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$CLUSTER_NAME",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$CNI_BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$STATE/cni/ipam",
        "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$CNI_BRIDGE_IP"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    }
  ]
}
EOF
  # The registry of scripts/images.sh speaks plain http on loopback.
  cat >"$STATE/containerd/certs.d/$REGISTRY_ADDRESS/hosts.toml" <<EOF
server = "http://$REGISTRY_ADDRESS"

[host."http://$REGISTRY_ADDRESS"]
  capabilities = ["pull", "resolve", "push"]
EOF
  # Every path containerd would otherwise put on the host (shim sockets and runc state under
  # /run/containerd, netns under /run/netns, /opt/containerd, the NRI socket) is pointed at our own
  # directories; host config imports are off so a Debian containerd's /etc/containerd cannot leak in.
  cat >"$STATE/etc/containerd.toml" <<EOF
version = 4
root = "$STATE/containerd/root"
state = "$STATE/containerd/state"
imports = []

[plugins.'io.containerd.server.v1.grpc']
  address = "$CTRD_SOCK"

[plugins.'io.containerd.server.v1.ttrpc']
  address = "$CTRD_SOCK.ttrpc"

[plugins.'io.containerd.shim.v1.manager']
  # Short: shim socket paths (dir + 64 hex digits) must stay under 108 bytes.
  socket_dir = "$RUN_DIR/s"

[plugins.'io.containerd.internal.v1.opt']
  path = "$STATE/containerd/opt"

[plugins.'io.containerd.nri.v1.nri']
  disable = true

[plugins.'io.containerd.cri.v1.runtime']
  # This host cannot lower oom_score_adj: without this every sandbox fails with
  # "can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  enable_selinux = false
  netns_mounts_under_state_dir = true
  cdi_spec_dirs = []
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      runtime_path = "$bin/containerd-shim-runc-v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        Root = "$RUN_DIR/runc"
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "$STATE/cni/net.d"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "$PAUSE_IMAGE"
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = "$STATE/containerd/certs.d"
EOF
  cat >"$STATE/etc/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $CNI_BRIDGE_IP
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $PKI/kubelet.crt
tlsPrivateKeyFile: $PKI/kubelet.key
containerRuntimeEndpoint: unix://$CTRD_SOCK
cgroupDriver: cgroupfs
cgroupRoot: $croot
# This host runs cgroup v1; kubelet >= 1.35 refuses it unless told otherwise.
failCgroupV1: false
failSwapOn: false
# Raising our own score is allowed, lowering it is not on this host.
oomScoreAdj: 0
podLogsDir: $STATE/pod-logs
# No cluster DNS (no CoreDNS image): pods get no resolver rather than the host's.
resolvConf: ""
evictionHard: {memory.available: 100Mi, nodefs.available: 5%, imagefs.available: 5%}
imageGCHighThresholdPercent: 95
imageGCLowThresholdPercent: 90
serializeImagePulls: false
maxPods: 110
EOF
  cat >"$STATE/etc/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {kubeconfig: $KCFG/kube-proxy.conf}
hostnameOverride: $NODE_NAME
clusterCIDR: $POD_CIDR
detectLocalMode: ClusterCIDR
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: ["$CNI_BRIDGE_IP/32"]
iptables: {localhostNodePorts: false, masqueradeAll: false, minSyncPeriod: 0s, syncPeriod: 30s}
# Leave the host's conntrack sysctls alone.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
}

egress_guard() {
  # Drop whatever arrives from the bridge for an address that is not a pod, a Service or the bridge's
  # own net: nothing from a pod reaches eth0 or beyond. Kept as rule 1 of FORWARD, ahead of
  # kube-proxy's KUBE-FORWARD (whose ACCEPTs would otherwise come first).
  iptables -w -N "$EGRESS_CHAIN" 2>/dev/null || iptables -w -F "$EGRESS_CHAIN"
  iptables -w -A "$EGRESS_CHAIN" -d "$POD_CIDR" -j RETURN
  iptables -w -A "$EGRESS_CHAIN" -d "$SERVICE_CIDR" -j RETURN
  iptables -w -A "$EGRESS_CHAIN" -m comment --comment "aic: pod egress outside the cluster" -j DROP
  egress_first
}

egress_first() {
  while iptables -w -D FORWARD -i "$CNI_BRIDGE" -j "$EGRESS_CHAIN" 2>/dev/null; do :; done
  while iptables -w -D FORWARD -o "$CNI_BRIDGE" ! -i "$CNI_BRIDGE" -j DROP 2>/dev/null; do :; done
  # Nor is anything forwarded into the bridge from another interface.
  iptables -w -I FORWARD 1 -o "$CNI_BRIDGE" ! -i "$CNI_BRIDGE" -j DROP
  iptables -w -I FORWARD 1 -i "$CNI_BRIDGE" -j "$EGRESS_CHAIN"
}

# The other parts plug in here: scripts/images.sh (Docker daemon + registry) and cluster/router/router.sh.
# One that was already running before our `up` (someone else's) is left running by our `down`.
plugin_up() { # plugin_up <name> <script>
  local name=$1 script=$2
  [ -f "$script" ] || return 0
  local was=no
  bash "$script" status >/dev/null 2>&1 && was=yes
  log "$name: bash ${script#"$ROOT"/} up (log: $LOGS/$name.log)"
  # Output to a file: a daemon it starts must not hold our caller's stdout open.
  if ! bash "$script" up >>"$LOGS/$name.log" 2>&1 </dev/null; then
    tail -n 20 "$LOGS/$name.log" >&2
    die "$name up failed"
  fi
  echo "$name $was $script" >>"$STATE/plugins"
}

plugins_down() {
  [ -f "$STATE/plugins" ] || return 0
  local name was script
  tac "$STATE/plugins" | while read -r name was script; do
    if [ "$was" = yes ]; then log "$name: was running before up, left running"; continue; fi
    log "$name: bash ${script#"$ROOT"/} down"
    bash "$script" down >>"$LOGS/$name.log" 2>&1 </dev/null || log "$name down failed (log: $LOGS/$name.log)"
  done
  rm -f "$STATE/plugins"
}

api_ready() {
  curl -sf --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" "$APISERVER/readyz" |
    grep -qx ok
}

node_ready() {
  [ "$("$1/kubectl" --kubeconfig "$KCFG/admin.conf" get node "$NODE_NAME" \
    -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}

# The kubelet taints the node (disk-pressure: every new pod stays Pending) once the free share of the
# filesystem under its state falls below evictionHard (5 %, kubelet.yaml below); the share counts the
# filesystem's whole size, which on a thin disk is more than what `df` shows as used + available. Refuse
# to start below 8 % with the figures, instead of failing later with Pending pods.
MIN_FREE_DISK_PERCENT=${AIC_MIN_FREE_DISK_PERCENT:-8}
check_free_disk() { # check_free_disk <dir>
  local size avail
  read -r size avail < <(df -P -k "$1" | awk 'NR == 2 {print $2, $4}')
  if [ $((avail * 100 / size)) -lt "$MIN_FREE_DISK_PERCENT" ]; then
    die "only $((avail / 1048576)) GiB of $((size / 1048576)) GiB free under $1 ($((avail * 100 / size)) %):" \
      "the kubelet would taint the node for disk pressure below 5 %; free at least" \
      "$(((size * MIN_FREE_DISK_PERCENT / 100 - avail) / 1048576 + 1)) GiB (Go build caches: go clean -cache)"
  fi
}

cmd_up() {
  local t_all bin dir croot h
  t_all=$(now)
  cmd_build
  dir=$(cache_dir); bin=$dir/bin
  if cmd_status >/dev/null 2>&1; then log "already up"; return 0; fi
  if [ -d "$PIDS" ] && [ -n "$(ls -A "$PIDS" 2>/dev/null)" ] || [ -d "$BEFORE" ]; then
    log "a previous cluster is partly running: taking it down first"
    # If the host could not be fully restored, keep the original snapshot so that the next `down`
    # still compares against the host as it was before any cluster.
    cmd_down || log "WARNING: continuing; the host snapshot of the first up is kept"
  fi
  mkdir -p "$STATE" "$LOGS" "$PIDS"
  check_free_disk "$STATE"
  [ -d "$BEFORE" ] || snapshot_host "$BEFORE"
  echo "$bin" >"$STATE/bin-dir"
  croot=$(cgroup_root)
  echo "$croot" >"$STATE/cgroup-root"
  make_pki
  write_configs "$bin" "$croot"

  local t0; t0=$(now)
  # kubelet refuses a loopback node IP, so the bridge (with the gateway address) comes first.
  ip link add "$CNI_BRIDGE" type bridge
  ip addr add "$CNI_BRIDGE_IP/${POD_CIDR#*/}" dev "$CNI_BRIDGE"
  ip link set "$CNI_BRIDGE" up
  sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1
  egress_guard
  # kubelet demands that the cgroup root exists in every hierarchy.
  : >"$STATE/cgroups-created"
  for h in $(cgroup_hierarchies); do
    local path=$h$croot d=$h$croot
    local made=()
    while [ ! -d "$d" ]; do made+=("$d"); d=$(dirname "$d"); done
    mkdir -p "$path"
    [ ${#made[@]} -gt 0 ] && printf '%s\n' "${made[@]}" >>"$STATE/cgroups-created"
    # A new v1 cpuset cgroup starts with no CPUs and no memory nodes: inherit the parent's, top down.
    if [ -f "$h/cpuset.cpus" ]; then
      local i
      for ((i = ${#made[@]} - 1; i >= 0; i--)); do
        cat "$(dirname "${made[$i]}")/cpuset.cpus" >"${made[$i]}/cpuset.cpus"
        cat "$(dirname "${made[$i]}")/cpuset.mems" >"${made[$i]}/cpuset.mems"
      done
    fi
  done

  mkdir -p "$STATE/etcd"
  start_proc etcd "$bin/etcd" --name "$CLUSTER_NAME" --data-dir "$STATE/etcd/data" \
    --listen-client-urls "https://127.0.0.1:$ETCD_CLIENT_PORT" \
    --advertise-client-urls "https://127.0.0.1:$ETCD_CLIENT_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "$CLUSTER_NAME=http://127.0.0.1:$ETCD_PEER_PORT" \
    --listen-metrics-urls "http://127.0.0.1:$((ETCD_CLIENT_PORT + 2))" \
    --cert-file "$PKI/etcd-server.crt" --key-file "$PKI/etcd-server.key" \
    --client-cert-auth --trusted-ca-file "$PKI/etcd-ca.crt"
  start_proc kube-apiserver "$bin/kube-apiserver" \
    --bind-address "$CNI_BRIDGE_IP" --advertise-address "$CNI_BRIDGE_IP" --secure-port "$APISERVER_PORT" \
    --etcd-servers "https://127.0.0.1:$ETCD_CLIENT_PORT" --etcd-cafile "$PKI/etcd-ca.crt" \
    --etcd-certfile "$PKI/apiserver-etcd-client.crt" --etcd-keyfile "$PKI/apiserver-etcd-client.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --client-ca-file "$PKI/ca.crt" --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority "$PKI/ca.crt" --kubelet-preferred-address-types InternalIP \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction --allow-privileged=true \
    --requestheader-client-ca-file "$PKI/front-proxy-ca.crt" --requestheader-allowed-names front-proxy-client \
    --requestheader-extra-headers-prefix X-Remote-Extra- --requestheader-group-headers X-Remote-Group \
    --requestheader-username-headers X-Remote-User \
    --proxy-client-cert-file "$PKI/front-proxy-client.crt" --proxy-client-key-file "$PKI/front-proxy-client.key" \
    --profiling=false
  wait_for 120 kube-apiserver api_ready
  local t_api; t_api=$(elapsed "$t0")
  log "apiserver ready in ${t_api} s"
  start_proc kube-controller-manager "$bin/kube-controller-manager" --kubeconfig "$KCFG/controller-manager.conf" \
    --authentication-kubeconfig "$KCFG/controller-manager.conf" \
    --authorization-kubeconfig "$KCFG/controller-manager.conf" \
    --bind-address 127.0.0.1 --leader-elect=false --use-service-account-credentials=true \
    --client-ca-file "$PKI/ca.crt" --requestheader-client-ca-file "$PKI/front-proxy-ca.crt" \
    --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
    --root-ca-file "$PKI/ca.crt" --service-account-private-key-file "$PKI/sa.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" --cluster-cidr "$POD_CIDR" --profiling=false
  start_proc kube-scheduler "$bin/kube-scheduler" --kubeconfig "$KCFG/scheduler.conf" \
    --authentication-kubeconfig "$KCFG/scheduler.conf" --authorization-kubeconfig "$KCFG/scheduler.conf" \
    --bind-address 127.0.0.1 --leader-elect=false --profiling=false

  # Our shim first on PATH (ctr-started tasks look it up there; a Debian containerd's shim may exist).
  PATH=$bin:$PATH start_proc containerd "$bin/containerd" --config "$STATE/etc/containerd.toml"
  wait_for 60 containerd "$bin/ctr" --address "$CTRD_SOCK" version
  "$bin/ctr" --address "$CTRD_SOCK" -n k8s.io images import --local "$dir/pause.tar" >/dev/null ||
    "$bin/ctr" --address "$CTRD_SOCK" -n k8s.io images import "$dir/pause.tar" >/dev/null
  local t1; t1=$(now)
  start_proc kubelet "$bin/kubelet" --config "$STATE/etc/kubelet.yaml" --kubeconfig "$KCFG/kubelet.conf" \
    --root-dir "$STATE/kubelet" --hostname-override "$NODE_NAME" --node-ip "$CNI_BRIDGE_IP"
  start_proc kube-proxy "$bin/kube-proxy" --config "$STATE/etc/kube-proxy.yaml"
  wait_for 120 "node $NODE_NAME" node_ready "$bin"
  local t_node; t_node=$(elapsed "$t1")
  log "node Ready ${t_node} s after kubelet start"
  wait_for 60 kube-proxy iptables -w -t nat -n -L KUBE-SERVICES
  egress_first
  plugin_up images "$ROOT/scripts/images.sh"
  plugin_up router "$ROOT/cluster/router/router.sh"
  log "cluster up in $(elapsed "$t_all") s (apiserver ready ${t_api} s, node Ready ${t_node} s after kubelet)"
  log "use: eval \"\$(bash scripts/cluster.sh env)\""
}

# ------------------------------------------------------------------------------------------ down
clean_tables() {
  # Rewrite each table without the chains and rules that we, kube-proxy, kubelet or CNI own.
  local save=$1 restore=$2 t
  for t in filter nat mangle raw; do
    local cur
    cur=$($save -t "$t" 2>/dev/null) || continue
    printf '%s\n' "$cur" | grep -Eq "(KUBE-|CNI-|AIC-)| $CNI_BRIDGE " || continue
    printf '%s\n' "$cur" | awk -v br="$CNI_BRIDGE" '
      /^:(KUBE-|CNI-|AIC-)/ {next}
      /^-A (KUBE-|CNI-|AIC-)/ {next}
      / -j (KUBE-|CNI-|AIC-)/ {next}
      $0 ~ ("^-A FORWARD -i " br " ") || $0 ~ ("^-A FORWARD -o " br " ") || $0 ~ ("^-A FORWARD ! -i " br " -o " br " ") {next}
      {print}' | $restore -w -T "$t"
  done
}

kill_shims() {
  # containerd's shims outlive containerd by design; ours are the ones started from our binary
  # with our socket, found by exact executable path and argument, and stopped by PID.
  local bin=$1 p exe
  for p in /proc/[0-9]*; do
    exe=$(readlink "$p/exe" 2>/dev/null) || continue
    [ "$exe" = "$bin/containerd-shim-runc-v2" ] || continue
    tr '\0' ' ' <"$p/cmdline" | grep -qF -- "-address $CTRD_SOCK" || continue
    kill -KILL "${p#/proc/}" 2>/dev/null || true
  done
}

cmd_down() {
  local bin="" t0
  t0=$(now)
  [ -f "$STATE/bin-dir" ] && bin=$(cat "$STATE/bin-dir")
  plugins_down
  # Controllers first, or ReplicaSets would recreate the pods deleted below.
  stop_proc kube-scheduler
  stop_proc kube-controller-manager
  if [ -n "$bin" ] && proc_alive kubelet && proc_alive kube-apiserver; then
    # Let kubelet tear pods down through CRI (CNI DEL frees veths, IPs and netns mounts).
    "$bin/kubectl" --kubeconfig "$KCFG/admin.conf" delete pods --all -A --grace-period=0 --force \
      --wait=false >/dev/null 2>&1 || true
    local i
    for i in $(seq 1 100); do
      [ "$("$bin/ctr" --address "$CTRD_SOCK" -n k8s.io tasks ls -q 2>/dev/null | wc -l)" = 0 ] && break
      sleep 0.2
    done
  fi
  stop_proc kube-proxy
  stop_proc kubelet
  if [ -n "$bin" ] && proc_alive containerd; then
    local c
    for c in $("$bin/ctr" --address "$CTRD_SOCK" -n k8s.io tasks ls -q 2>/dev/null); do
      "$bin/ctr" --address "$CTRD_SOCK" -n k8s.io tasks kill -s SIGKILL "$c" >/dev/null 2>&1 || true
    done
  fi
  stop_proc containerd
  [ -n "$bin" ] && kill_shims "$bin"
  stop_proc kube-apiserver
  stop_proc etcd

  # Mounts that were not there before (overlay rootfs, shm, netns, kubelet volumes), limited to the
  # places our runtime mounts under, deepest first.
  if [ -f "$BEFORE/mounts" ]; then
    local m
    awk '{print $5}' /proc/self/mountinfo | sort -u | while read -r m; do
      case "$m" in "$STATE"/* | /run/netns/* | /var/run/netns/* | /run/containerd/*) ;; *) continue ;; esac
      grep -q "^$m " "$BEFORE/mounts" || echo "$m"
    done | awk '{print length, $0}' | sort -rn | cut -d' ' -f2- | while read -r m; do
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "could not unmount $m"
    done
  fi
  # Veths left on our bridge (normally CNI DEL removed them), then the bridge itself.
  local l
  for l in $(ip -o link show master "$CNI_BRIDGE" 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//'); do
    ip link del "$l" 2>/dev/null || true
  done
  ip link del "$CNI_BRIDGE" 2>/dev/null || true
  clean_tables iptables-save iptables-restore
  clean_tables ip6tables-save ip6tables-restore
  if [ -f "$BEFORE/sysctls" ]; then
    local k v
    while read -r k v; do
      [ "$(tr '\t' ' ' <"/proc/sys/$k" 2>/dev/null)" = "$v" ] || echo "$v" >"/proc/sys/$k" 2>/dev/null ||
        log "could not restore $k"
    done <"$BEFORE/sysctls"
  fi
  # Cgroups: everything under our root in each hierarchy, then the parents we created.
  if [ -f "$STATE/cgroup-root" ]; then
    local croot h
    croot=$(cat "$STATE/cgroup-root")
    for h in $(cgroup_hierarchies); do
      [ -d "$h$croot" ] && find "$h$croot" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    done
    [ -f "$STATE/cgroups-created" ] && sort -r "$STATE/cgroups-created" | while read -r d; do
      [ -d "$d" ] && rmdir "$d" 2>/dev/null || true
    done
    rm -f "$STATE/cgroup-root" "$STATE/cgroups-created"
  fi
  # runc keeps a state directory per container under our root; a container whose shim was killed
  # leaves its state behind. `runc delete --force` kills what may still run and removes the state.
  local ns id
  for ns in "$RUN_DIR"/runc/*/; do
    [ -d "$ns" ] || continue
    for id in $(ls "$ns" 2>/dev/null); do
      runc --root "${ns%/}" delete --force "$id" >/dev/null 2>&1 || rm -rf --one-file-system "${ns%/}/$id"
    done
  done
  # Host directories that appeared with the cluster: their stale sockets (of SIGKILLed shims) and
  # empty directories go; anything still in use by another runtime stays.
  if [ -f "$BEFORE/dirs" ]; then
    local d s
    for d in "${HOST_DIRS[@]}"; do
      grep -qx "$d" "$BEFORE/dirs" && continue
      [ -d "$d" ] && ! [ -L "$d" ] || continue
      # libcni's cache of our network's results (named <network>-<container>-<ifname>).
      rm -f "$d/results/$CLUSTER_NAME-"* "$d/results/cni-loopback-"* 2>/dev/null || true
      find "$d" -type s 2>/dev/null | while read -r s; do
        grep -qF " $s" /proc/net/unix || rm -f "$s"
      done
      find "$d" -depth -type d -empty -delete 2>/dev/null || true
    done
  fi
  # A fresh cluster every `up`: data, pod state and logs of pods go; PKI and our logs stay.
  rm -rf --one-file-system "$STATE/etcd" "$STATE/kubelet" "$STATE/containerd/root" "$STATE/containerd/state" \
    "$STATE/cni/ipam" "$STATE/pod-logs" 2>/dev/null || true
  # The Pulumi state of stacks deployed into this cluster (scripts/cluster-deploy.sh) describes objects
  # that just went with etcd: it goes too, so the next `up` of a stack starts from nothing instead of
  # from a state (or a lock left by a killed `pulumi up`) that no longer matches the cluster.
  rm -rf --one-file-system "${IMMUNE_STATE_DIR:-$HOME/.local/state/active-immune-core}/deploy/backend" \
    2>/dev/null || true
  local rc=0
  if [ -d "$BEFORE" ]; then
    local after=$STATE/host-after
    rm -rf "$after"
    snapshot_host "$after"
    # Mounts: only where our runtime mounts (a Docker daemon of scripts/images.sh that was running
    # before `up` may mount and unmount build containers meanwhile).
    local f scope="^($STATE/|/run/netns/|/var/run/netns/|/run/containerd/|$RUN_DIR/)"
    grep -E "$scope" "$BEFORE/mounts" >"$BEFORE/mounts-ours" || true
    grep -E "$scope" "$after/mounts" >"$after/mounts-ours" || true
    for f in links addrs routes mounts-ours sysctls dirs iptables-filter iptables-nat iptables-mangle iptables-raw \
      ip6tables-filter ip6tables-nat ip6tables-mangle ip6tables-raw; do
      if ! diff -u "$BEFORE/$f" "$after/$f" >&2; then log "host not restored: $f differs"; rc=1; fi
    done
    [ $rc -eq 0 ] && rm -rf "$BEFORE" "$after"
  fi
  log "down in $(elapsed "$t0") s"
  return $rc
}

# ---------------------------------------------------------------------------------------- status
cmd_status() {
  local bad=0 n bin
  local rss_total=0 pid rss
  for n in etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy; do
    if proc_alive "$n"; then
      pid=$(cut -d' ' -f1 "$PIDS/$n.pid")
      rss=$(awk '/^VmRSS:/{print int($2/1024)}' "/proc/$pid/status" 2>/dev/null || echo 0)
      rss_total=$((rss_total + rss))
      echo "$n: running (pid $pid, RSS ${rss} MiB)"
    else echo "$n: NOT running"; bad=1; fi
  done
  echo "RSS of the cluster processes: ${rss_total} MiB"
  if [ -f "$PKI/admin.crt" ] && api_ready; then echo "apiserver: ready ($APISERVER)"
  else echo "apiserver: NOT ready"; bad=1; fi
  bin=$(cat "$STATE/bin-dir" 2>/dev/null || true)
  if [ -n "$bin" ] && [ $bad -eq 0 ] && node_ready "$bin"; then echo "node $NODE_NAME: Ready"
  else echo "node $NODE_NAME: NOT Ready"; bad=1; fi
  if iptables -w -S FORWARD 2>/dev/null | sed -n 2p | grep -q -- "-j $EGRESS_CHAIN"; then
    echo "egress guard: first FORWARD rule"
  else echo "egress guard: MISSING"; bad=1; fi
  return $bad
}

cmd_env() {
  local dir; dir=$(cache_dir)
  echo "export KUBECONFIG=$KCFG/admin.conf"
  echo "export AIC_CLUSTER_BIN=$dir/bin"
  echo "export AIC_CLUSTER_STATE=$STATE"
  echo "export CONTAINERD_ADDRESS=$CTRD_SOCK"
  echo "export AIC_CLUSTER_APISERVER=$APISERVER"
  echo "export PATH=$dir/bin:\$PATH"
}

# Sourcing the script (for debugging a step) defines the functions without running a command.
[ "${BASH_SOURCE[0]}" = "$0" ] || return 0

# up/down change the host (bridges, iptables chains, mounts, cgroups, sysctls): root, asked for, never assumed.
require_root() {
  [ "$(id -u)" -eq 0 ] || die "'$1' changes the host's network, mounts and cgroups: run it as root (sudo bash $0 $1)"
}

case "${1:-}" in
  build) cmd_build ;;
  up) require_root up && cmd_up ;;
  down) require_root down && cmd_down ;;
  status) cmd_status ;;
  env) cmd_env ;;
  check-disk) mkdir -p "$STATE" && check_free_disk "$STATE" ;;
  *) echo "usage: $0 build|up|down|status|env|check-disk" >&2; exit 2 ;;
esac
