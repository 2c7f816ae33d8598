#!/usr/bin/env bash
# Builds the Debian package of ringhook for one architecture, from the static binary that
# scripts/build-static.sh makes, with dpkg-deb alone (no debhelper), and prints its path and size.
#
# Usage: scripts/build-deb.sh [--no-install] [x86_64|aarch64|armv6]
#   x86_64  -> target/deb/ringhook_<version>_amd64.deb
#   aarch64 -> target/deb/ringhook_<version>_arm64.deb  (64-bit Raspberry Pi OS, Pi 3/4/5/Zero 2 W)
#   armv6   -> target/deb/ringhook_<version>_armhf.deb  (32-bit Raspberry Pi OS on any Pi: its
#              "armhf" is ARMv6 + VFP, so the package carries the ARMv6 binary, which ARMv7 and
#              ARMv8 cores run too)
#   Default: x86_64. --no-install is passed on to build-static.sh (exit 3 when something is missing).
#
# The version is Cargo.toml's (a native package: no Debian revision). The package is
# reproducible: every timestamp is SOURCE_DATE_EPOCH, by default the last commit's time.
#
# Contents (modes and owners are checked by tests/deb.rs, lintian run there):
#   /usr/bin/ringhook                            the static binary, no runtime dependency at all
#   /usr/lib/systemd/system/ringhook.service     scripts/systemd/*, with /usr/bin/ringhook
#   /usr/lib/systemd/system/ringhook-register.{service,timer}
#   /etc/ringhook/ringhook.env                   conffile, scripts/env.example; 0600 root:root in
#                                                a 0700 directory: it holds the app secret and a
#                                                JWT, and only root (systemd's LoadCredential=)
#                                                ever reads it, so no group needs it (0640 root:root
#                                                would grant nothing more)
#   /etc/logrotate.d/ringhook                    conffile: weekly, then SIGHUP through ExecReload=
#   /usr/share/doc/ringhook/                     README.Debian, copyright, changelog.gz
#   /usr/share/lintian/overrides/ringhook        the warnings that do not apply, with reasons
# Not in the package: /var/lib/ringhook and /var/lib/ringhook-register, the state directories
# that hold the event log and the subscription state. The units run as a dynamic user
# (DynamicUser=), for which systemd makes them at first start (StateDirectory=) as
# /var/lib/private/<name> owned by that user plus a /var/lib/<name> link; a directory dpkg owned
# there would be moved and replaced by systemd. So dpkg never removes them: remove and purge
# keep the event log and state. The maintainer scripts (scripts/deb/) generate the verification
# token at install, stop the services on remove, and delete /etc/ringhook on purge.
set -euo pipefail

cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/static}"

pass=()
arch=x86_64
for arg in "$@"; do
  case "$arg" in
    --no-install) pass+=("$arg") ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
      exit 0
      ;;
    x86_64 | amd64) arch=x86_64 ;;
    aarch64 | arm64) arch=aarch64 ;;
    armv6 | armhf) arch=armv6 ;;
    *)
      echo "build-deb: unknown argument $arg (x86_64, aarch64 or armv6; see --help)" >&2
      exit 2
      ;;
  esac
done
case "$arch" in
  x86_64) triple=x86_64-unknown-linux-musl deb_arch=amd64 ;;
  aarch64) triple=aarch64-unknown-linux-musl deb_arch=arm64 ;;
  armv6) triple=arm-unknown-linux-musleabihf deb_arch=armhf ;;
esac

for tool in dpkg-deb gzip md5sum; do
  command -v "$tool" >/dev/null || {
    echo "build-deb: missing $tool (apt-get install dpkg-dev)" >&2
    exit 3
  }
done

version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)"
[ -n "$version" ] || {
  echo "build-deb: no version in Cargo.toml" >&2
  exit 1
}
# Not exported before the build: cc-rs tracks SOURCE_DATE_EPOCH, so a build under it would not
# reuse the one build-static.sh and the tests made without it (measured: ring and all that
# follows recompiled, 1.5 min per target).
epoch="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}"
maintainer="ringhook maintainers <maintainers@ringhook.invalid>"

bash scripts/build-static.sh "${pass[@]}" "$arch" >&2
bin="$CARGO_TARGET_DIR/$triple/release/ringhook"

out=target/deb
root="$out/$deb_arch"
rm -rf "$root"
umask 022
mkdir -p "$root/DEBIAN"
install -D -m 0755 "$bin" "$root/usr/bin/ringhook"

# The units as the sources ship them, pointed at /usr/bin and told they were packaged.
units="$root/usr/lib/systemd/system"
mkdir -p "$units"
for u in ringhook.service ringhook-register.service ringhook-register.timer; do
  sed -e 's|/usr/local/bin/ringhook|/usr/bin/ringhook|g' \
    -e '/^# Install (see README/,/^#$/c\
# Installed by the ringhook package: fill in /etc/ringhook/ringhook.env, then\
#   systemctl enable --now ringhook ringhook-register.timer\
#' \
    "scripts/systemd/$u" >"$units/$u"
  if [ "$deb_arch" = armhf ]; then
    # 32-bit Raspberry Pi OS boots a 64-bit kernel on a Pi 4/5 by default, for which this
    # binary's system calls are not `native`: allow 32-bit ARM ones too (native on a 32-bit kernel).
    sed -i 's/^SystemCallArchitectures=native$/SystemCallArchitectures=native arm/' "$units/$u"
  fi
  chmod 0644 "$units/$u"
done

install -d -m 0700 "$root/etc/ringhook"
install -m 0600 scripts/env.example "$root/etc/ringhook/ringhook.env"
install -D -m 0644 scripts/deb/logrotate "$root/etc/logrotate.d/ringhook"

doc="$root/usr/share/doc/ringhook"
install -d "$doc"
install -m 0644 scripts/deb/README.Debian scripts/deb/copyright "$doc/"
{
  echo "ringhook ($version) unstable; urgency=medium"
  echo
  echo "  * Built from the ringhook sources by scripts/build-deb.sh; the project's"
  echo "    history is in its git log."
  echo
  echo " -- $maintainer  $(date -u -R -d "@$epoch")"
} | gzip -9n >"$doc/changelog.gz"
chmod 0644 "$doc/changelog.gz"
install -D -m 0644 scripts/deb/lintian-overrides "$root/usr/share/lintian/overrides/ringhook"
# Static on purpose, which lintian reports by the ELF type: x86_64 is a static PIE (ET_DYN, seen
# as a shared library), the others plain static executables.
{
  echo "# Static on purpose (musl, no dynamic loader, no DT_NEEDED): needing no library is the"
  echo "# point of this package."
  if [ "$deb_arch" = amd64 ]; then
    echo "# A static PIE is an ET_DYN, which lintian takes for a shared library."
    echo "ringhook: shared-library-lacks-prerequisites [usr/bin/ringhook]"
  else
    echo "ringhook: statically-linked-binary [usr/bin/ringhook]"
  fi
} >>"$root/usr/share/lintian/overrides/ringhook"

for s in postinst prerm postrm; do
  install -m 0755 "scripts/deb/$s" "$root/DEBIAN/$s"
done
printf '%s\n' /etc/ringhook/ringhook.env /etc/logrotate.d/ringhook >"$root/DEBIAN/conffiles"
(cd "$root" && find usr -type f | LC_ALL=C sort | xargs md5sum) >"$root/DEBIAN/md5sums"
installed_kb="$(du -s -k --apparent-size --exclude=DEBIAN "$root" | cut -f1)"
cat >"$root/DEBIAN/control" <<EOF
Package: ringhook
Version: $version
Architecture: $deb_arch
Maintainer: $maintainer
Installed-Size: $installed_kb
Section: net
Priority: optional
Description: RingCentral webhook receiver and subscription keeper
 ringhook receives RingCentral webhook notifications and appends each one,
 synced to disk before it is acknowledged, to an event log; its register
 command keeps the webhook subscription alive. One static binary with no
 runtime dependency, run by hardened systemd units as a dynamic user.
 .
 Fill in /etc/ringhook/ringhook.env, then run
 systemctl enable --now ringhook ringhook-register.timer
EOF
chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/conffiles" "$root/DEBIAN/md5sums"

# Reproducible: one timestamp everywhere, owner root:root, dpkg-deb sorts the members.
find "$root" -exec touch -h -d "@$epoch" {} +
deb="$out/ringhook_${version}_${deb_arch}.deb"
SOURCE_DATE_EPOCH="$epoch" dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >&2
printf '%-32s %9d bytes  %s\n' "ringhook_${version}_${deb_arch}.deb" "$(stat -c %s "$deb")" "$deb"
