#!/usr/bin/env bash
# Generates the Go code of Outrigger's own protos (xds/api/...) with protoc
# and protoc-gen-go at pinned versions. With --check it regenerates into a
# scratch folder and fails if the committed code differs.
set -euo pipefail
cd "$(dirname "$0")/.."

PROTOC_GEN_GO_VERSION=v1.36.12
export PATH="$(go env GOPATH)/bin:$PATH"
if ! command -v protoc >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq protobuf-compiler
fi
if ! protoc-gen-go --version 2>/dev/null | grep -q "${PROTOC_GEN_GO_VERSION}"; then
  go install "google.golang.org/protobuf/cmd/protoc-gen-go@${PROTOC_GEN_GO_VERSION}"
fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
protos=$(find xds/api -name '*.proto' | sort)
protoc --proto_path=. --go_out="$out" --go_opt=paths=source_relative $protos

if [ "${1:-}" = "--check" ]; then
  for p in $protos; do
    gen="${p%.proto}.pb.go"
    if ! cmp -s "$out/$gen" "$gen"; then
      echo "$gen is not what protoc generates from $p: run bash scripts/protogen.sh" >&2
      exit 1
    fi
  done
  echo "generated code is up to date"
else
  for p in $protos; do
    cp "$out/${p%.proto}.pb.go" "${p%.proto}.pb.go"
  done
fi
