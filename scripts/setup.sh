#!/usr/bin/env bash
# Installs what the build and the test suite need on a fresh Debian machine with rustup.
# Idempotent: safe to run again. Used by the README's test command and by .ci/run.
set -euo pipefail

need_apt=()
# (packages are added here as the suite needs them)

if ((${#need_apt[@]})); then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "setup: please install: ${need_apt[*]}" >&2
  fi
fi

rustup component add rustfmt clippy >/dev/null 2>&1 || true
cargo fetch --locked >/dev/null
