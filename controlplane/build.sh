#!/usr/bin/env bash
# Builds the real local control plane from the official Go modules, pinned, into a cache keyed by version:
#   $GCO_CACHE_DIR/controlplane/kubernetes-<v>/bin/{kube-apiserver,kube-controller-manager,kube-scheduler,kubectl}
#   $GCO_CACHE_DIR/controlplane/etcd-<v>/bin/etcd
#   $GCO_CACHE_DIR/controlplane/kwok-<v>/bin/kwok
# A component whose folder holds a `.complete` stamp is never rebuilt. Run by `make controlplane` (and so by
# `make test` and `make sandbox`), not by hand. Needs Go >= 1.26 and the Go module proxy.
#
# Each component is built from its wrapper module in controlplane/modules/<component>/ (go.mod and go.sum,
# committed; controlplane/lock.sh writes them): with -mod=readonly, so Go resolves nothing here and checks
# every module it downloads against the committed go.sum; `go mod verify` then checks the module cache.
set -euo pipefail

# K8S_VERSION, ETCD_VERSION, KWOK_VERSION: the one list of pinned versions, shared with the Python launcher.
# shellcheck source=versions.env
source "$(dirname "${BASH_SOURCE[0]}")/versions.env"
CACHE="${GCO_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/gco-tasks}/controlplane"
BUILD_JOBS="${BUILD_JOBS:-$(nproc 2>/dev/null || echo 2)}"

start_all=$(date +%s)
say() { printf '[controlplane %4ds] %s\n' "$(( $(date +%s) - start_all ))" "$*"; }

require_go() {
  if ! command -v go >/dev/null 2>&1; then
    echo "controlplane: Go is not installed; install Go 1.26 or later (https://go.dev/dl/) and run 'make controlplane' again." >&2
    exit 1
  fi
  local minor
  minor=$(go env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')
  if [ "${minor:-0}" -lt 26 ]; then
    echo "controlplane: Go $(go env GOVERSION) is too old; Kubernetes ${K8S_VERSION} needs Go 1.26 or later." >&2
    exit 1
  fi
}

# go build -v prints one line per package it compiles: turn that into a line every 150 packages.
progress() {
  local label=$1 total=$2
  awk -v label="$label" -v total="$total" -v t0="$(date +%s)" '
    { n++; if (n % 150 == 0) { printf "[controlplane] %s: %d/%d packages compiled (%ds)\n", label, n, total, systime() - t0; fflush() } }
    /^#|error|cannot|undefined/ { print; fflush() }'
}

# The wrapper module of a component, checked against versions.env, copied into a scratch folder.
prepare_module() {   # component, its Go module, version, scratch folder
  local name=$1 module=$2 version=$3 work=$4 modules
  modules="$(dirname "${BASH_SOURCE[0]}")/modules/$name"
  if ! grep -qE "^[[:space:]]*(require )?$module $version( // indirect)?\$" "$modules/go.mod"; then
    echo "controlplane: $modules/go.mod does not require $module $version (versions.env);" \
         "run 'make controlplane-lock' and commit controlplane/modules/." >&2
    exit 1
  fi
  rm -rf "$work" && mkdir -p "$work"
  cp "$modules/go.mod" "$modules/go.sum" "$work/"
  (cd "$work" && go mod download && go mod verify >/dev/null) || {
    echo "controlplane: a module of $name does not match controlplane/modules/$name/go.sum; see above." >&2
    exit 1
  }
}

build_kubernetes() {
  local dest="$CACHE/kubernetes-$K8S_VERSION"
  if [ -f "$dest/.complete" ]; then say "kubernetes $K8S_VERSION: cached in $dest"; return; fi
  say "kubernetes $K8S_VERSION: building kube-apiserver, kube-controller-manager, kube-scheduler, kubectl (measured: about 6 minutes on 2 cores with the Go module cache warm, about 10 from nothing)"
  local work="$CACHE/build/kubernetes-$K8S_VERSION"
  prepare_module kubernetes k8s.io/kubernetes "$K8S_VERSION" "$work"
  mkdir -p "$dest/bin"
  local major_minor=${K8S_VERSION#v}; major_minor=${major_minor%.*}
  local ldflags="-s -w"
  for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
    ldflags="$ldflags -X '$pkg.gitVersion=$K8S_VERSION' -X '$pkg.gitMajor=${major_minor%%.*}' -X '$pkg.gitMinor=${major_minor#*.}'"
    ldflags="$ldflags -X '$pkg.gitTreeState=clean' -X '$pkg.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)'"
  done
  local cmds=(k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager
              k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl)
  local total
  total=$(cd "$work" && go list -deps "${cmds[@]}" | wc -l)
  say "kubernetes: compiling $total packages"
  (cd "$work" && go build -v -p "$BUILD_JOBS" -trimpath -ldflags "$ldflags" -o "$dest/bin/" "${cmds[@]}" 2>&1) | progress kubernetes "$total"
  for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    [ -x "$dest/bin/$cmd" ] || { echo "controlplane: $cmd was not built; see the output above." >&2; exit 1; }
  done
  "$dest/bin/kube-apiserver" --version
  touch "$dest/.complete"
  rm -rf "$work"
  say "kubernetes $K8S_VERSION: done"
}

build_etcd() {
  local dest="$CACHE/etcd-$ETCD_VERSION"
  if [ -f "$dest/.complete" ]; then say "etcd $ETCD_VERSION: cached in $dest"; return; fi
  say "etcd $ETCD_VERSION: building"
  local work="$CACHE/build/etcd-$ETCD_VERSION"
  prepare_module etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION" "$work"
  mkdir -p "$dest/bin"
  (cd "$work" && go build -p "$BUILD_JOBS" -trimpath -ldflags "-s -w" -o "$dest/bin/etcd" go.etcd.io/etcd/server/v3)
  "$dest/bin/etcd" --version | head -1
  touch "$dest/.complete"
  rm -rf "$work"
  say "etcd $ETCD_VERSION: done"
}

build_kwok() {
  local dest="$CACHE/kwok-$KWOK_VERSION"
  if [ -f "$dest/.complete" ]; then say "kwok $KWOK_VERSION: cached in $dest"; return; fi
  say "kwok $KWOK_VERSION: building"
  local work="$CACHE/build/kwok-$KWOK_VERSION"
  prepare_module kwok sigs.k8s.io/kwok "$KWOK_VERSION" "$work"
  mkdir -p "$dest/bin"
  (cd "$work" && go build -p "$BUILD_JOBS" -trimpath -ldflags "-s -w" -o "$dest/bin/kwok" sigs.k8s.io/kwok/cmd/kwok)
  "$dest/bin/kwok" --version 2>/dev/null | head -1 || true
  touch "$dest/.complete"
  rm -rf "$work"
  say "kwok $KWOK_VERSION: done"
}

main() {
  if [ -f "$CACHE/kubernetes-$K8S_VERSION/.complete" ] && [ -f "$CACHE/etcd-$ETCD_VERSION/.complete" ] \
     && [ -f "$CACHE/kwok-$KWOK_VERSION/.complete" ]; then
    exit 0   # everything cached: stay quiet, this runs before every `make test`
  fi
  require_go
  # Resolve nothing: every module comes from the committed go.mod/go.sum (the environment's other flags kept).
  export GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=readonly"
  mkdir -p "$CACHE"
  # One build at a time per cache: a second `make test` (another checkout, another shell) waits for the
  # first instead of compiling the same thing twice on the same cores.
  exec 9>"$CACHE/.build.lock"
  if ! flock -n 9; then
    say "another build is running in $CACHE; waiting for it"
    flock 9
  fi
  build_etcd
  build_kwok
  build_kubernetes
  say "all built in $CACHE"
}

main "$@"
