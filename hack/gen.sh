#!/usr/bin/env bash
# Generates what is generated from the API types in api/: the deep copies
# (api/*/zz_generated.deepcopy.go) and the CustomResourceDefinitions
# (config/crd, and the Helm chart's crds/) and the controller's RBAC
# (config/rbac/role.yaml), with the pinned controller-gen. `hack/gen.sh --check`
# generates into a scratch copy and fails if the committed files differ.
set -euo pipefail
cd "$(dirname "$0")/.."

CONTROLLER_TOOLS_VERSION=v0.23.0
export GOTOOLCHAIN=local GOFLAGS="${GOFLAGS:-} -buildvcs=false"

gen() { # gen DIR: generate into the tree rooted at DIR
  (cd "$1" && go run "sigs.k8s.io/controller-tools/cmd/controller-gen@$CONTROLLER_TOOLS_VERSION" \
    object paths=./api/... \
    crd:maxDescLen=400 paths=./api/... output:crd:artifacts:config=config/crd \
    rbac:roleName=hitless-controller paths=./internal/controller/... output:rbac:artifacts:config=config/rbac)
}

if [ "${1:-}" != "--check" ]; then
  gen .
  # The Helm chart ships the same CRDs (Helm installs crds/ first).
  rm -f charts/hitless/crds/*.yaml
  cp config/crd/hitless.dev_*.yaml charts/hitless/crds/
  exit 0
fi
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cp -r go.mod go.sum api cmd config internal "$scratch"/
rm -f "$scratch"/config/crd/hitless.dev_*.yaml "$scratch"/config/rbac/role.yaml
gen "$scratch"
if ! diff -ru api "$scratch/api" || ! diff -ru -x kustomization.yaml "$scratch/config/crd" charts/hitless/crds || ! diff -ru -x kustomization.yaml config/crd "$scratch/config/crd" || ! diff -u config/rbac/role.yaml "$scratch/config/rbac/role.yaml"; then
  echo "generated files are stale: run hack/gen.sh and commit the result"
  exit 1
fi
