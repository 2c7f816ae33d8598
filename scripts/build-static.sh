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
# 32-bit Raspberry Pi OS and ARMv6 (not buildable on machines whose rustup cannot download these
# targets, so untested by this project's CI; same mechanism as aarch64):
#   armv7 -> armv7-unknown-linux-musleabihf  Pi 2/3/4/Zero 2 W running 32-bit Pi OS.
#            Needs: rustup target add armv7-unknown-linux-musleabihf; apt install gcc-arm-linux-gnueabihf
#   armv6 -> arm-unknown-linux-musleabihf    Pi 1 and Pi Zero/Zero W (ARMv6 + VFP, hard float).
#            Same compiler, told to emit ARMv6 code: Debian's arm-linux-gnueabihf-gcc defaults to
#            ARMv7 + Thumb-2, which an ARMv6 core cannot run (SIGILL in ring's C code).
set -euo pipefail

cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/static}"
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
      need_cc arm-linux-gnueabihf-gcc gcc-arm-linux-gnueabihf
      export "CC_${cc_name}=arm-linux-gnueabihf-gcc"
      export "CARGO_TARGET_${env_name}_RUSTFLAGS=$lld_flags $no_unwind"
      ;;
    arm-unknown-linux-musleabihf)
      need_cc arm-linux-gnueabihf-gcc gcc-arm-linux-gnueabihf
      export "CC_${cc_name}=arm-linux-gnueabihf-gcc"
      export "CFLAGS_${cc_name}=-march=armv6 -mfpu=vfp -mfloat-abi=hard -marm"
      export "CARGO_TARGET_${env_name}_RUSTFLAGS=$lld_flags $no_unwind"
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
