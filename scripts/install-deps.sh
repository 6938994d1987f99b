#!/usr/bin/env bash
# Installs every build and test dependency of klserve from the distribution's own packages.
# Supports Debian 12 (bookworm) and Ubuntu 24.04 (noble, the CUDA container base). Idempotent.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
. /etc/os-release
case "${ID}:${VERSION_ID}" in
  debian:12|ubuntu:24.04) ;;
  *) echo "install-deps: untested distribution ${PRETTY_NAME}; trying anyway" >&2 ;;
esac

packages=(
  build-essential cmake ninja-build pkg-config git ca-certificates python3
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  nlohmann-json3-dev libspdlog-dev libfmt-dev catch2 libboost-dev libboost-system-dev
  libpcre2-dev libcli11-dev
)
# Test clients (node + npm) are only needed where tests run.
# An existing node (e.g. from NodeSource) is kept; Debian's is installed only where none is.
if [ "${KL_INSTALL_TEST_TOOLS:-1}" = "1" ]; then
  packages+=(curl)
  command -v node >/dev/null && command -v npm >/dev/null || packages+=(nodejs npm)
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${packages[@]}"
