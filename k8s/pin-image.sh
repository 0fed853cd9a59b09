#!/bin/sh
# Pin an image by digest. Resolves IMAGE:TAG to the sha256 digest its registry serves for that tag right
# now (the manifest list's digest for a multi-platform image), with whichever of crane, skopeo or
# docker buildx is installed, and then either
#   k8s/pin-image.sh --print public.ecr.aws/aws-cli/aws-cli:2.22.35
#       prints public.ecr.aws/aws-cli/aws-cli:2.22.35@sha256:... (for MODEL_SYNC_IMAGE), or
#   k8s/pin-image.sh k8s/overlays/us-east-1 111122223333.dkr.ecr.us-east-1.amazonaws.com/gco-tasks:0.1.0
#       rewrites that overlay's `images:` entry: newName (the repository) and digest (the tag is kept as a
#       comment on the digest line). Review with `git diff` and `kubectl kustomize`.
# Needs credentials for the registry (e.g. `aws ecr get-login-password | crane auth login ...` or
# `docker login`). Exit codes: 0 done, 1 the digest could not be resolved, 2 usage.
set -eu

usage() {
    echo "usage: $0 --print IMAGE:TAG | $0 OVERLAY_DIR IMAGE:TAG" >&2
    exit 2
}

resolve() {
    if command -v crane >/dev/null 2>&1; then
        crane digest "$1"
    elif command -v skopeo >/dev/null 2>&1; then
        skopeo inspect --raw "docker://$1" | skopeo manifest-digest /dev/stdin
    elif command -v docker >/dev/null 2>&1; then
        docker buildx imagetools inspect --format '{{.Manifest.Digest}}' "$1"
    else
        echo "pin-image.sh: install crane, skopeo or docker (with buildx) to resolve $1" >&2
        return 1
    fi
}

[ "$#" -eq 2 ] || usage
target=$1
ref=$2
case "${ref##*/}" in
    *@*) echo "pin-image.sh: give IMAGE:TAG without a digest (got one already)" >&2; exit 2 ;;
    *:*) ;;
    *) echo "pin-image.sh: give IMAGE:TAG, with a tag" >&2; exit 2 ;;
esac
if [ "$target" != "--print" ] && [ ! -f "$target/kustomization.yaml" ]; then
    echo "pin-image.sh: $target/kustomization.yaml not found" >&2
    exit 2
fi

digest=$(resolve "$ref") || { echo "pin-image.sh: could not resolve $ref" >&2; exit 1; }
if ! printf '%s\n' "$digest" | grep -Eqx 'sha256:[0-9a-f]{64}'; then
    echo "pin-image.sh: $ref did not resolve to a sha256 digest" >&2
    exit 1
fi

if [ "$target" = "--print" ]; then
    echo "$ref@$digest"
    exit 0
fi

repository=${ref%:*}
tag=${ref##*:}
file=$target/kustomization.yaml
sed -e "s#^\(    newName:\).*#\1 $repository#" \
    -e "s#^\(    digest:\).*#\1 $digest  \# $tag#" "$file" >"$file.tmp"
if ! grep -q "digest: $digest" "$file.tmp"; then
    rm -f "$file.tmp"
    echo "pin-image.sh: no '    digest:' line under images: in $file" >&2
    exit 1
fi
mv "$file.tmp" "$file"
echo "pinned $repository@$digest ($tag) in $file"
