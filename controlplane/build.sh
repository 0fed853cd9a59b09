#!/usr/bin/env bash
# Builds the real local control plane from the official Go modules, pinned, into a cache keyed by version:
#   $GCO_CACHE_DIR/controlplane/kubernetes-<v>/bin/{kube-apiserver,kube-controller-manager,kube-scheduler,kubectl}
#   $GCO_CACHE_DIR/controlplane/etcd-<v>/bin/etcd
#   $GCO_CACHE_DIR/controlplane/kwok-<v>/bin/kwok
# A component whose folder holds a `.complete` stamp is never rebuilt. Run by `make controlplane` (and so by
# `make test` and `make sandbox`), not by hand. Needs Go >= 1.26 and the Go module proxy.
#
# Why a wrapper module: k8s.io/kubernetes's go.mod requires its staging modules (k8s.io/api, ...) at v0.0.0 and
# replaces them with local paths, which Go ignores in a dependency; the wrapper replaces each with its
# published v0.<minor>.<patch>. etcd's server module has the same problem for `go install`.
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

build_kubernetes() {
  local dest="$CACHE/kubernetes-$K8S_VERSION"
  if [ -f "$dest/.complete" ]; then say "kubernetes $K8S_VERSION: cached in $dest"; return; fi
  say "kubernetes $K8S_VERSION: building kube-apiserver, kube-controller-manager, kube-scheduler, kubectl (measured: about 6 minutes on 2 cores with the Go module cache warm, about 10 from nothing)"
  local work="$CACHE/build/kubernetes-$K8S_VERSION"
  rm -rf "$work" && mkdir -p "$work" "$dest/bin"
  local gomod staging minor
  gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  staging=$(sed -nE 's/^[[:space:]]+(k8s\.io\/[a-z0-9-]+) v0\.0\.0$/\1/p' "$gomod" | sort -u)
  minor=${K8S_VERSION#v1.}
  {
    echo "module gco-tasks.local/controlplane/kubernetes"
    echo
    grep -E '^(go|godebug) ' "$gomod"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    echo "replace ("
    for module in $staging; do echo "	$module => $module v0.$minor"; done
    echo ")"
    echo
    echo "tool ("
    for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl; do echo "	k8s.io/kubernetes/cmd/$cmd"; done
    echo ")"
  } > "$work/go.mod"
  say "kubernetes: wrapper module with $(echo "$staging" | wc -w) staging replaces; resolving dependencies"
  (cd "$work" && go mod tidy >/dev/null)
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
  rm -rf "$work" && mkdir -p "$work" "$dest/bin"
  printf 'module gco-tasks.local/controlplane/etcd\n\ngo 1.26.0\n\ntool go.etcd.io/etcd/server/v3\n' > "$work/go.mod"
  (cd "$work" && go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >/dev/null 2>&1 && go mod tidy >/dev/null)
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
  mkdir -p "$dest/bin"
  GOBIN="$dest/bin" go install -p "$BUILD_JOBS" -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  "$dest/bin/kwok" --version 2>/dev/null | head -1 || true
  touch "$dest/.complete"
  say "kwok $KWOK_VERSION: done"
}

main() {
  if [ -f "$CACHE/kubernetes-$K8S_VERSION/.complete" ] && [ -f "$CACHE/etcd-$ETCD_VERSION/.complete" ] \
     && [ -f "$CACHE/kwok-$KWOK_VERSION/.complete" ]; then
    exit 0   # everything cached: stay quiet, this runs before every `make test`
  fi
  require_go
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
