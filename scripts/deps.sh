#!/usr/bin/env bash
# Installs the Debian packages shoal needs to build, test and fuzz. Idempotent: when every
# package is present it does nothing (and needs no network). Runs apt-get as root, or via sudo.
set -euo pipefail
PKGS=(
  build-essential make pkg-config git python3      # toolchain, scripts
  clang libclang-rt-dev                            # clang build check, libFuzzer, sanitizers
  libcmocka-dev                                    # unit tests
  libjansson-dev                                   # JSON at the edges
  libssl-dev                                       # libcrypto: SHA-256
  libmicrohttpd-dev                                # the HTTP server
  libcurl4-openssl-dev                             # HTTP client (tests, cluster)
  libyaml-dev                                      # cluster.yaml
  libsqlite3-dev                                   # the response cache's file tier
  libhiredis-dev redis-server                      # its shared tier, and the server its tests start
  curl                                             # integration tests talk HTTP
)
# Node.js and npm run the official openai client in the integration tests; a machine that has
# them from elsewhere (a newer Node) keeps its own.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  PKGS+=(nodejs npm)
fi
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all ${#PKGS[@]} packages present"
  exit 0
fi
echo "deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
