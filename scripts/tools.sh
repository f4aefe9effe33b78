#!/usr/bin/env bash
# Builds the real third-party programs the tests and benchmarks need (see
# ../shared/TOOLS.md) into a cache outside the clone, keyed by name and version, and
# prints the path of each binary. A binary already in the cache is not rebuilt,
# so CI's fresh clones on the same machine reuse it.
#
# Usage: scripts/tools.sh [all | NAME...]     build (if needed) and print paths
#        scripts/tools.sh path NAME           print the path without building
#        scripts/tools.sh regen NAME          re-create scripts/tools/NAME/go.{mod,sum}
#        scripts/tools.sh list                the names this script knows
#
# Cache: ${OUTRIGGER_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/outrigger-tools}/NAME-VERSION/BINARY
#
# Programs whose own go.mod has replace directives are built from a wrapper
# module committed under scripts/tools/NAME/ (go.mod with the `tool` line and
# the program's replace block, and its go.sum), so builds need no GONOSUMDB.
# `regen NAME` re-creates that wrapper the way TOOLS.md describes; commit its
# result when a version changes.
#
# Adding a program: a tool_NAME function setting the variables below, and NAME
# in `tools`. For a wrapper module also a regen_NAME function; then run
# `scripts/tools.sh regen NAME` once and commit scripts/tools/NAME/.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cache=${OUTRIGGER_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/outrigger-tools}
export GOTOOLCHAIN=local
export GOFLAGS="${GOFLAGS:-} -buildvcs=false"
# Modules the checksum database here does not know (../shared/TOOLS.md). Only `regen`
# needs this; builds from a committed go.sum verify against it.
nosumdb=github.com/open-telemetry/opentelemetry-collector-contrib,go.opentelemetry.io/collector,github.com/dapr/components-contrib,github.com/GoogleCloudPlatform/cloudsql-proxy

# Every program `all` builds, in order.
tools=(daprd consul coredns jaeger)

# Each tool_NAME sets:
#   version  the version, part of the cache directory name
#   binary   the file name of the binary
#   pkg      the main package to build
#   tags     build tags ("" for none)
#   ldflags  linker flags ("" for none)
#   wrapper  "yes" to build in the committed wrapper module scripts/tools/NAME,
#            "no" to build with `go install pkg@version`

tool_daprd() {
  version=1.18.1
  binary=daprd
  pkg=github.com/dapr/dapr/cmd/daprd
  # Without a components tag daprd panics at start; stablecomponents is what
  # Dapr releases ship, allcomponents would add the Consul resolver.
  tags=stablecomponents
  ldflags="-s -w -X github.com/dapr/dapr/pkg/buildinfo.version=${version} -X github.com/dapr/dapr/pkg/buildinfo.gitversion=v${version}"
  wrapper=yes
}

# regen_daprd re-creates the wrapper module in $1: requires daprd as a tool and
# copies the replace blocks of dapr's own go.mod (go install refuses it).
regen_daprd() {
  local dir=$1 gomod
  (
    cd "$dir"
    go mod init outrigger-tools/daprd >/dev/null 2>&1
    gomod=$(go mod download -json "github.com/dapr/dapr@v${version}" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')
    [ -n "$gomod" ] || { echo "tools.sh: no go.mod for dapr v${version}" >&2; exit 1; }
    { echo; awk '/^replace[[:space:]]*\(/,/^\)/' "$gomod"; } >>go.mod
    go get -tool "${pkg}@v${version}"
    go mod tidy
  )
}

tool_consul() {
  version=1.22.7
  binary=consul
  pkg=github.com/hashicorp/consul
  tags=""
  ldflags="-s -w"
  wrapper=yes
}

# regen_consul: consul's go.mod has replace directives; two go-msgpack
# versions its dependencies name are excluded (../shared/TOOLS.md).
regen_consul() {
  local dir=$1
  (
    cd "$dir"
    go mod init outrigger-tools/consul >/dev/null 2>&1
    printf '\nexclude github.com/hashicorp/go-msgpack v1.1.5\nexclude github.com/hashicorp/go-msgpack v1.1.6\n' >>go.mod
    go get -tool "${pkg}@v${version}" github.com/hashicorp/consul/api@v1.34.1
    go mod tidy
  )
}

# CoreDNS serves the cluster records of the Kubernetes DNS tests.
tool_coredns() {
  version=1.11.3
  binary=coredns
  pkg=github.com/coredns/coredns
  tags=""
  ldflags="-s -w"
  wrapper=no
}

# Jaeger (all-in-one, memory storage) receives the tracing tests' spans over
# OTLP and answers its query API.
tool_jaeger() {
  version=1.76.0
  binary=jaeger
  pkg=github.com/jaegertracing/jaeger/cmd/jaeger
  tags=""
  ldflags="-s -w"
  wrapper=yes
}

# regen_jaeger: jaeger's go.mod needs sarama pinned (../shared/TOOLS.md).
regen_jaeger() {
  local dir=$1
  (
    cd "$dir"
    go mod init outrigger-tools/jaeger >/dev/null 2>&1
    printf '\nreplace github.com/Shopify/sarama => github.com/Shopify/sarama v1.33.0\n' >>go.mod
    go get -tool "${pkg}@v${version}"
    go mod tidy
  )
}

# Temporary directories, removed when the script exits however it exits.
temps=()
cleanup() { if [ ${#temps[@]} -gt 0 ]; then rm -rf "${temps[@]}"; fi; }
trap cleanup EXIT
tempdir() { mktemp -d "${TMPDIR:-/tmp}/outrigger-tools.XXXXXX"; }

load() { # name: set the tool's variables
  if ! declare -F "tool_$1" >/dev/null; then
    echo "tools.sh: unknown program $1 (known: ${tools[*]})" >&2
    exit 2
  fi
  version="" binary="" pkg="" tags="" ldflags="" wrapper=no
  "tool_$1"
}

dest_of() { # name
  echo "$cache/$1-$version/$binary"
}

build() { # name: build into the cache unless there, print the path
  local name=$1 dest dir tmp start lock
  load "$name"
  dest=$(dest_of "$name")
  if [ -x "$dest" ]; then
    echo "$dest"
    return
  fi
  dir="$root/scripts/tools/$name"
  mkdir -p "$(dirname "$dest")"
  # One build at a time per program (CI jobs may share the cache); whoever
  # waited finds the binary there.
  exec {lock}>"$(dirname "$dest")/.lock"
  flock "$lock"
  if [ -x "$dest" ]; then
    exec {lock}>&-
    echo "$dest"
    return
  fi
  tmp=$(tempdir)
  temps+=("$tmp")
  start=$(date +%s)
  echo "tools.sh: building $name $version into $dest (cold: several minutes)" >&2
  if [ "$wrapper" = yes ]; then
    if [ ! -f "$dir/go.mod" ] || [ ! -f "$dir/go.sum" ]; then
      echo "tools.sh: scripts/tools/$name/go.mod or go.sum is missing; run scripts/tools.sh regen $name" >&2
      exit 1
    fi
    cp "$dir/go.mod" "$dir/go.sum" "$tmp/"
    (cd "$tmp" && go build -mod=readonly -trimpath -tags "$tags" -ldflags "$ldflags" -o "$dest.tmp" "$pkg")
  else
    (cd "$tmp" && GOBIN="$tmp/bin" go install -trimpath -tags "$tags" -ldflags "$ldflags" "$pkg@v$version" &&
      mv "$tmp/bin/$(basename "$pkg")" "$dest.tmp")
  fi
  mv "$dest.tmp" "$dest"
  exec {lock}>&-
  echo "tools.sh: built $name in $(($(date +%s) - start)) s" >&2
  echo "$dest"
}

regen() { # name: re-create scripts/tools/NAME/go.{mod,sum}
  local name=$1 tmp
  load "$name"
  if ! declare -F "regen_$name" >/dev/null; then
    echo "tools.sh: $name has no wrapper module" >&2
    exit 2
  fi
  tmp=$(tempdir)
  temps+=("$tmp")
  GONOSUMDB=$nosumdb "regen_$name" "$tmp"
  mkdir -p "$root/scripts/tools/$name"
  cp "$tmp/go.mod" "$tmp/go.sum" "$root/scripts/tools/$name/"
  echo "tools.sh: wrote scripts/tools/$name/go.mod and go.sum" >&2
}

cmd=${1:-all}
case "$cmd" in
  all) for t in "${tools[@]}"; do build "$t"; done ;;
  list) printf '%s\n' "${tools[@]}" ;;
  path)
    [ $# -eq 2 ] || { echo "usage: scripts/tools.sh path NAME" >&2; exit 2; }
    load "$2"; dest_of "$2" ;;
  regen)
    [ $# -eq 2 ] || { echo "usage: scripts/tools.sh regen NAME" >&2; exit 2; }
    regen "$2" ;;
  -h|--help|help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//' ;;
  *) for t in "$@"; do build "$t"; done ;;
esac
