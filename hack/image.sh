#!/usr/bin/env bash
# Builds hitless's container image without Docker: a static binary on an
# empty base, non-root, as an OCI image layout archive.
#   hack/image.sh [REF] [GOARCH]   (default ghcr.io/hitless-dev/hitless:dev, this machine's)
# Then: `ctr -n k8s.io images import bin/hitless-image.tar`, or
# `crane push bin/hitless-image.tar REF` after untarring it as a layout.
# The controller (hitless controller run) and the node agent (hitless
# agent) are the same image.
set -euo pipefail
cd "$(dirname "$0")/.."
ref=${1:-ghcr.io/hitless-dev/hitless:dev}
arch=${2:-$(go env GOARCH)}
export GOTOOLCHAIN=local
mkdir -p bin
revision=$(git rev-parse HEAD 2>/dev/null || true)
CGO_ENABLED=0 GOOS=linux GOARCH="$arch" go build -trimpath -ldflags='-s -w' -o "bin/hitless-linux-$arch" ./cmd/hitless
go run ./hack/image --binary "bin/hitless-linux-$arch" --arch "$arch" --out bin/hitless-image.tar --ref "$ref" --revision "$revision"
