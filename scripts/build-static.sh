#!/usr/bin/env bash
# Builds ringhook as fully static musl binaries (no dynamic loader, no libc on the target machine,
# CA roots compiled in via webpki-roots) and prints each binary's path and size.
#
# Usage: scripts/build-static.sh [--no-install] [--prebuilt-std] [TARGET...]
#   TARGET: x86_64 | aarch64 | armv7 | armv6, or a full Rust target triple.
#           Default: x86_64 aarch64 (PCs, servers, 64-bit Raspberry Pi OS on Pi 3/4/5/Zero 2 W).
#   --no-install    never install anything; exit 3 naming what is missing instead (the test suite
#                   uses this so that running tests never changes the machine).
#   --prebuilt-std  link the toolchain's prebuilt standard library instead of compiling it (no
#                   rust-src needed; about 480 KB larger on x86_64, see below).
#
# The standard library is compiled with the program (cargo -Z build-std, from the toolchain's
# rust-src component, on the stable compiler through RUSTC_BOOTSTRAP=1), so that it gets the
# release profile (opt-level z, LTO with our code), std's optimize_for_size feature, and no unwind
# tables. Measured (bytes, prebuilt std -> compiled std): x86_64 2,055,880 -> 1,572,344;
# aarch64 1,754,424 -> 1,317,920. Panics still print their message and location and abort
# (SIGABRT), as before.
#
# Binaries land in $CARGO_TARGET_DIR/<triple>/release/ringhook, with CARGO_TARGET_DIR defaulting
# to target/static: a directory of its own, so these builds never invalidate or wait on the
# ordinary `cargo build` / `cargo test` artifacts in target/.
#
# What each target needs (installed here when missing, as root on Debian):
#   x86_64-unknown-linux-musl   rustup target; musl-gcc (Debian musl-tools) compiles ring's C
#                               (on a non-x86_64 host: x86_64-linux-gnu-gcc); links as below.
#   aarch64-unknown-linux-musl  rustup target; aarch64-linux-gnu-gcc (Debian gcc-aarch64-linux-gnu;
#                               the native gcc on an arm64 host) compiles ring's C, which needs no
#                               libc headers beyond memcpy-level declarations; Rust's bundled
#                               rust-lld links against Rust's own self-contained musl CRT, so no
#                               aarch64 musl sysroot is needed.
#
#   armv7-unknown-linux-musleabihf  (`armv7`) ARMv7 + VFPv3-D16, hard float, Thumb-2: Pi 2/3/4 and
#                               Zero 2 W on 32-bit Pi OS, Debian armhf boards.
#   arm-unknown-linux-musleabihf    (`armv6`) ARMv6 + VFPv2, hard float: every 32-bit Raspberry Pi
#                               OS ("armhf" there means ARMv6, unlike Debian's), Pi 1 and Zero / Zero W
#                               included. No ARMv7 instruction may end up in it.
#   For both, zig (PyPI's ziglang, as cargo-zigbuild uses it) compiles ring's C and links, with
#   its bundled musl libc and libunwind compiled for the exact CPU (-mcpu below) on first use.
#   Why zig: rustup cannot download these targets' std here, and -Z build-std compiles std
#   anyway; what is then missing is the target's musl CRT and libc.a (rustup's rust-std brings
#   them for x86_64 and aarch64). Debian has none that fits ARMv6: musl-dev:armhf is compiled for
#   Debian's armhf baseline (ARMv7 + Thumb-2, checked: its objects say Tag_CPU_arch v7, and a
#   Thumb-2 libc faults on an ARM1176), and musl-dev:armel uses the soft-float ABI (float
#   arguments in core registers, where our hard-float code passes them in VFP registers). zig
#   builds musl for any CPU and gives both targets one toolchain from one registry package, with
#   no foreign dpkg architecture. Costs (measured): a 100 MB wheel (411 MB installed) and about a
#   minute per target to compile musl and libunwind on a cold cache ($CARGO_TARGET_DIR/zig/cache).
#   Measured cold, 2 cores: armv6 4m09s (2m39s CPU), armv7 6m30s while a test build shared the
#   cores (2m29s CPU); sizes armv6 1,613,256 B, armv7 1,591,728 B.
#   armv7 is tuned for the Cortex-A7 (Pi 2), so its C and libc may use NEON and VFPv4, which
#   every Pi from the Pi 2 on has (not some early non-Pi ARMv7 boards). On the ARMv6 binary, ARMv7
#   code remains only behind run-time checks: musl's atomics pick their ARMv6 or ARMv7 variant from
#   AT_PLATFORM/AT_HWCAP, ring's NEON routines run only when HWCAP says NEON.
set -euo pipefail

cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/static}"
# Run from `cargo test` (tests/static_binary.rs, tests/deb.rs), this inherits the test's
# CARGO_MANIFEST_* and CARGO_PKG_* variables, which ring's build script tracks: builds by the
# tests and by hand would never reuse each other's (measured: ring and all after it recompiled,
# 1.5-2 min per target, each time one follows the other). Cargo sets its own for build scripts.
while read -r var; do unset "$var"; done < <(compgen -e | grep -E '^CARGO_(MANIFEST|PKG)_')
cargo="${CARGO:-cargo}"

install=1
build_std=1
targets=()
for arg in "$@"; do
  case "$arg" in
    --no-install) install=0 ;;
    --prebuilt-std) build_std=0 ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
      exit 0
      ;;
    x86_64) targets+=(x86_64-unknown-linux-musl) ;;
    aarch64 | arm64) targets+=(aarch64-unknown-linux-musl) ;;
    armv7) targets+=(armv7-unknown-linux-musleabihf) ;;
    armv6) targets+=(arm-unknown-linux-musleabihf) ;;
    -*)
      echo "build-static: unknown option $arg (see --help)" >&2
      exit 2
      ;;
    *) targets+=("$arg") ;;
  esac
done
((${#targets[@]})) || targets=(x86_64-unknown-linux-musl aarch64-unknown-linux-musl)

# Exit 3 (the suite's "prerequisite missing") when not allowed or not able to install.
missing() {
  echo "build-static: missing $1; install it with: $2" >&2
  exit 3
}

need_target() {
  # A zig target needs no rustup component when std is compiled here (-Z build-std).
  if ((build_std)) && [[ " ${zig_targets[*]-} " == *" $1 "* ]]; then return 0; fi
  if ! rustup target list --installed 2>/dev/null | grep -qx "$1"; then
    ((install)) || missing "Rust target $1" "rustup target add $1"
    rustup target add "$1" >&2
  fi
}

# $1: compiler command, $2: the Debian package that provides it.
need_cc() {
  command -v "$1" >/dev/null && return 0
  if ((install)) && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "build-static: installing $2 for $1" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
  else
    missing "C compiler $1" "apt-get install $2"
  fi
}

# rust-lld with Rust's self-contained musl CRT: no cross linker or musl sysroot needed. Used for
# every target so all link alike. --icf=all folds identical functions (measured -16 KB on x86_64).
lld_flags="-Clinker=rust-lld -Clink-self-contained=yes -Clink-arg=--icf=all"
# x86_64 links as a static PIE (ASLR for the binary itself); RELR packs its ~75 KB of relative
# relocations into ~2 KB (measured -70 KB). Rust's bundled musl (1.2.5) applies RELR at start-up;
# tests/static_binary.rs runs the result.
relr="-Clink-arg=--pack-dyn-relocs=relr"
# No unwind tables: with panic = "abort" nothing unwinds, and no backtrace is printed (std is
# built without its backtrace feature). Only pays with std compiled here: the prebuilt std brings
# its own. Measured on x86_64: .eh_frame 189 KB -> 6 KB. The C flags do the same for ring's C.
no_unwind=""
if ((build_std)); then
  no_unwind="-Cforce-unwind-tables=no"
fi

# $1: target triple with '_' for '-'. Appends to the target's C flags.
no_c_unwind() {
  ((build_std)) || return 0
  local var="CFLAGS_$1"
  export "$var=${!var:+${!var} }-fno-asynchronous-unwind-tables -fno-unwind-tables"
}

# zig from PyPI's ziglang, pinned: the version these recipes were measured with.
zig_version=0.17.1
zig=""
need_zig() {
  [ -n "$zig" ] && return 0
  local find='import os, ziglang; print(os.path.join(os.path.dirname(ziglang.__file__), "zig"))'
  if ! zig="$(python3 -c "$find" 2>/dev/null)" || [ ! -x "$zig" ]; then
    ((install)) || missing "zig (PyPI ziglang)" "python3 -m pip install ziglang==$zig_version"
    echo "build-static: installing ziglang==$zig_version from PyPI" >&2
    python3 -m pip install -q --disable-pip-version-check "ziglang==$zig_version" >&2 ||
      python3 -m pip install -q --disable-pip-version-check --break-system-packages \
        "ziglang==$zig_version" >&2
    zig="$(python3 -c "$find")"
  fi
}

# $1: Rust triple, $2: zig triple, $3: zig CPU. Writes $CARGO_TARGET_DIR/zig/$1-cc (and -ar),
# `zig cc` for that triple and CPU, and makes it the target's C compiler and linker.
zig_targets=()
zig_target() {
  need_zig
  zig_targets+=("$1")
  local dir env_name cc_name
  dir="$(mkdir -p "$CARGO_TARGET_DIR/zig" && cd "$CARGO_TARGET_DIR/zig" && pwd)"
  env_name="$(echo "$1" | tr 'a-z-' 'A-Z_')"
  cc_name="$(echo "$1" | tr '-' '_')"
  # cc-rs adds a clang-style --target=<Rust triple>, which zig does not parse: drop it, as
  # cargo-zigbuild does; -target and -mcpu here decide. zig's cache stays under target/.
  cat >"$dir/$1-cc" <<EOF
#!/bin/sh
for a; do shift; case "\$a" in --target=*) ;; *) set -- "\$@" "\$a" ;; esac; done
export ZIG_GLOBAL_CACHE_DIR='$dir/cache' ZIG_LOCAL_CACHE_DIR='$dir/cache'
exec '$zig' cc -target $2 -mcpu=$3 "\$@"
EOF
  printf '#!/bin/sh\nexec %s ar "$@"\n' "'$zig'" >"$dir/$1-ar"
  chmod +x "$dir/$1-cc" "$dir/$1-ar"
  export "CC_${cc_name}=$dir/$1-cc" "AR_${cc_name}=$dir/$1-ar"
  export "CARGO_TARGET_${env_name}_LINKER=$dir/$1-cc"
  # zig's musl CRT and libc, not the toolchain's (which rustup would bring with the target).
  export "CARGO_TARGET_${env_name}_RUSTFLAGS=-Clink-self-contained=no $no_unwind"
}

for t in "${targets[@]}"; do
  # The per-target variables below only affect that target, never the host build.
  env_name="$(echo "$t" | tr 'a-z-' 'A-Z_')"
  cc_name="$(echo "$t" | tr '-' '_')"
  case "$t" in
    x86_64-unknown-linux-musl)
      if [ "$(uname -m)" = x86_64 ]; then
        need_cc musl-gcc musl-tools
        export "CC_${cc_name}=musl-gcc"
      else
        # Cross from another host (an arm64 Docker builder): same scheme as aarch64 below.
        need_cc x86_64-linux-gnu-gcc gcc-x86-64-linux-gnu
        export "CC_${cc_name}=x86_64-linux-gnu-gcc"
      fi
      export "CARGO_TARGET_${env_name}_RUSTFLAGS=$lld_flags $relr $no_unwind"
      ;;
    aarch64-unknown-linux-musl)
      need_cc aarch64-linux-gnu-gcc gcc-aarch64-linux-gnu
      export "CC_${cc_name}=aarch64-linux-gnu-gcc"
      export "CARGO_TARGET_${env_name}_RUSTFLAGS=$lld_flags $no_unwind"
      ;;
    armv7-unknown-linux-musleabihf)
      zig_target "$t" arm-linux-musleabihf cortex_a7
      ;;
    arm-unknown-linux-musleabihf)
      # arm1176jzf_s: the Pi 1 / Zero core (ARMv6KZ + VFPv2): zig's musl and libunwind and ring's
      # C get no ARMv7 or Thumb-2 instruction (tests/static_binary.rs runs the binary on qemu's
      # arm1176, which faults on one).
      zig_target "$t" arm-linux-musleabihf arm1176jzf_s
      ;;
    *) echo "build-static: $t: no recipe; trying with the defaults" >&2 ;;
  esac
  no_c_unwind "$cc_name"
  need_target "$t"
done

args=(build --release --locked)
if ((build_std)); then
  # rust-src: the standard library's source, from the same rustup channel as the targets.
  if [ ! -f "$(rustc --print sysroot)/lib/rustlib/src/rust/library/Cargo.lock" ]; then
    ((install)) || missing "the rust-src component (-Z build-std)" "rustup component add rust-src"
    rustup component add rust-src >&2
  fi
  # The unstable flags are those of Rust 1.95; RUSTC_BOOTSTRAP=1 allows them on stable.
  export RUSTC_BOOTSTRAP=1
  args+=(-Zbuild-std=std,panic_abort -Zbuild-std-features=optimize_for_size)
fi
for t in "${targets[@]}"; do args+=(--target "$t"); done
# One cargo invocation for all targets: shared host build scripts, both cores busy.
"$cargo" "${args[@]}"

for t in "${targets[@]}"; do
  bin="$CARGO_TARGET_DIR/$t/release/ringhook"
  bytes=$(stat -c %s "$bin")
  # MiB with two decimals without bc: integer arithmetic on hundredths.
  mib=$((bytes * 100 / 1048576))
  printf '%-32s %9d bytes  %d.%02d MiB  %s\n' "$t" "$bytes" $((mib / 100)) $((mib % 100)) "$bin"
done
