#!/usr/bin/env bash
# Regenerates the control plane's Go lock: one wrapper module per component under controlplane/modules/,
# its go.mod naming the version of versions.env and its go.sum holding the checksum of every module the
# build fetches. Run by `make controlplane-lock` after a version in versions.env changes, then commit
# controlplane/modules/. build.sh never resolves anything itself: it builds these modules with
# -mod=readonly, so a module whose content differs from its go.sum line, or a module go.sum does not
# list, stops the build. Here the checksums come from the Go checksum database (GOSUMDB, never off).
#
# Why wrapper modules: k8s.io/kubernetes's go.mod requires its staging modules (k8s.io/api, ...) at v0.0.0 and
# replaces them with local paths, which Go ignores in a dependency; the wrapper replaces each with its
# published v0.<minor>.<patch>. etcd's server module has the same problem for `go install`; kwok has none,
# but a wrapper gives it a go.sum of ours too.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"
MODULES="$here/modules"

if [ "$(go env GOSUMDB)" = off ] || [ -n "$(go env GONOSUMDB)" ] || [ -n "$(go env GOPRIVATE)" ] \
   || [ -n "$(go env GOINSECURE)" ]; then
  echo "controlplane/lock.sh: checksums must come from the Go checksum database; unset GOSUMDB=off," \
       "GONOSUMDB, GOPRIVATE and GOINSECURE and run it again." >&2
  exit 1
fi


write_module() {   # name, go.mod text: tidy it in a scratch folder, keep go.mod and go.sum
  local name=$1 text=$2 scratch
  scratch=$(mktemp -d)
  printf '%s\n' "$text" > "$scratch/go.mod"
  (cd "$scratch" && go mod tidy)
  mkdir -p "$MODULES/$name"
  cp "$scratch/go.mod" "$scratch/go.sum" "$MODULES/$name/"
  rm -rf "$scratch"
  echo "controlplane/modules/$name: $(wc -l < "$MODULES/$name/go.sum") checksums"
}

kubernetes_module() {
  local gomod staging minor
  gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  staging=$(sed -nE 's/^[[:space:]]+(k8s\.io\/[a-z0-9-]+) v0\.0\.0$/\1/p' "$gomod" | sort -u)
  minor=${K8S_VERSION#v1.}
  echo "module gco-tasks.local/controlplane/kubernetes"
  echo
  grep -E '^(go|godebug) ' "$gomod"
  echo
  echo "require k8s.io/kubernetes $K8S_VERSION"
  echo
  echo "replace ("
  for module in $staging; do printf '\t%s => %s v0.%s\n' "$module" "$module" "$minor"; done
  echo ")"
  echo
  echo "tool ("
  for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    printf '\tk8s.io/kubernetes/cmd/%s\n' "$cmd"
  done
  echo ")"
}

write_module kubernetes "$(kubernetes_module)"
write_module etcd "$(printf 'module gco-tasks.local/controlplane/etcd\n\ngo 1.26.0\n\nrequire go.etcd.io/etcd/server/v3 %s\n\ntool go.etcd.io/etcd/server/v3\n' "$ETCD_VERSION")"
write_module kwok "$(printf 'module gco-tasks.local/controlplane/kwok\n\ngo 1.26.0\n\nrequire sigs.k8s.io/kwok %s\n\ntool sigs.k8s.io/kwok/cmd/kwok\n' "$KWOK_VERSION")"
