#!/usr/bin/env bash
# Checks systemd/teewatch.service with systemd's own tools, without a running systemd:
#
#   1. installs the binary and the unit into a temporary root, at the paths the unit names
#      (/usr/bin/teewatch, /etc/systemd/system/teewatch.service, /bin/kill for
#      ExecReload=), and runs `systemd-analyze verify --root=ROOT` on it. verify only warns about
#      unknown keys or bad values, so ANY output is a failure. Then the same with the fleet
#      drop-in systemd/teewatch-fleet.conf installed as teewatch.service.d/fleet.conf
#      (docs/fleet-ops.md), which verify reads with the unit;
#   2. runs `systemd-analyze security --offline=true` on the unit (with the drop-in) and fails if the overall
#      exposure is above 1.5 (the threshold can be lowered with TEEWATCH_MAX_EXPOSURE);
#   3. checks that the shipped config.toml is valid (`teewatch config check`).
#
# Usage: systemd/check.sh [PATH-TO-TEEWATCH-BINARY]   (default: target/debug/teewatch, built
# with `cargo build` if missing). Exit 0 when every check passes, 1 when one fails, 77 when
# systemd-analyze is not installed (Debian: apt-get install systemd).
#
# The last line of a successful run is `overall exposure: N (threshold T)`.
set -euo pipefail

case "${BASH_SOURCE[0]}" in */*) here="${BASH_SOURCE[0]%/*}" ;; *) here=. ;; esac
here="$(cd "$here" && pwd)"
repo="$(cd "$here/.." && pwd)"
unit="$here/teewatch.service"
dropin="$here/teewatch-fleet.conf"
threshold="${TEEWATCH_MAX_EXPOSURE:-1.5}"

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "systemd-analyze not found: cannot check $unit (Debian: apt-get install systemd)" >&2
    exit 77
fi
echo "== $(systemd-analyze --version | sed -n 1p)"

if [ $# -ge 1 ]; then
    bin="$1"
else
    bin="$repo/target/debug/teewatch"
    if [ ! -x "$bin" ]; then
        echo "== building $bin"
        (cd "$repo" && cargo build --quiet --bin teewatch)
    fi
fi
[ -f "$bin" ] && [ -x "$bin" ] || fail "$bin is not an executable file"
[ -f "$unit" ] || fail "$unit is missing"
[ -f "$dropin" ] || fail "$dropin is missing"

root="$(mktemp -d "${TMPDIR:-/tmp}/teewatch-systemd.XXXXXX")"
trap 'rm -rf -- "$root"' EXIT

# A small Debian-like root (merged /usr): the unit, the binary at its ExecStart path, kill(1)
# for ExecReload=, and stand-ins for the targets the unit and its default dependencies name, so
# that verify judges this unit rather than the host's unit files.
mkdir -p "$root/usr/bin" "$root/usr/lib/systemd/system" \
    "$root/etc/systemd/system" "$root/etc/teewatch/credentials"
ln -s usr/bin "$root/bin"
ln -s usr/lib "$root/lib"
ln -s usr/sbin "$root/sbin"
ln -- "$bin" "$root/usr/bin/teewatch" 2>/dev/null || cp -- "$bin" "$root/usr/bin/teewatch"
chmod 0755 "$root/usr/bin/teewatch"
host_kill="$(command -v /bin/kill /usr/bin/kill 2>/dev/null | head -1 || true)"
if [ -n "$host_kill" ]; then
    cp -- "$host_kill" "$root/usr/bin/kill"
else
    printf '#!/bin/sh\nexit 0\n' >"$root/usr/bin/kill"
fi
chmod 0755 "$root/usr/bin/kill"
for target in sysinit.target basic.target shutdown.target network-online.target multi-user.target; do
    printf '[Unit]\nDescription=Stand-in for %s\n' "$target" >"$root/usr/lib/systemd/system/$target"
done
install -m 0644 "$unit" "$root/etc/systemd/system/teewatch.service"
install -m 0644 "$repo/config.toml" "$root/etc/teewatch/config.toml"
installed="$root/etc/systemd/system/teewatch.service"

export SYSTEMD_COLORS=0 SYSTEMD_PAGER=cat SYSTEMD_LOG_COLOR=0 LC_ALL=C.UTF-8

echo "== systemd-analyze verify --root=ROOT ROOT/etc/systemd/system/teewatch.service"
set +e
said="$(systemd-analyze verify --man=no --generators=no --recursive-errors=yes \
    --root="$root" "$installed" 2>&1)"
rc=$?
set -e
if [ -n "$said" ] || [ "$rc" -ne 0 ]; then
    printf '%s\n' "$said" >&2
    fail "systemd-analyze verify exited $rc and/or printed the lines above (any output fails)"
fi
echo "verify: clean (exit 0, no output)"

echo "== systemd-analyze verify with systemd/teewatch-fleet.conf as ROOT/etc/systemd/system/teewatch.service.d/fleet.conf"
mkdir -p "$root/etc/systemd/system/teewatch.service.d"
install -m 0644 "$dropin" "$root/etc/systemd/system/teewatch.service.d/fleet.conf"
set +e
said="$(systemd-analyze verify --man=no --generators=no --recursive-errors=yes \
    --root="$root" "$installed" 2>&1)"
rc=$?
set -e
if [ -n "$said" ] || [ "$rc" -ne 0 ]; then
    printf '%s\n' "$said" >&2
    fail "systemd-analyze verify with the fleet drop-in exited $rc and/or printed the lines above (any output fails)"
fi
echo "verify with systemd/teewatch-fleet.conf: clean (exit 0, no output)"

echo "== systemd-analyze security --offline=true --root=ROOT ROOT/etc/systemd/system/teewatch.service"
set +e
report="$(systemd-analyze security --no-pager --offline=true --root="$root" "$installed" 2>&1)"
rc=$?
set -e
# Only what is not fully protected, and the score.
printf '%s\n' "$report" | grep -E '✗|Overall exposure' || true
[ "$rc" -eq 0 ] || { printf '%s\n' "$report" >&2; fail "systemd-analyze security exited $rc"; }
score="$(printf '%s\n' "$report" |
    sed -nE 's/.*Overall exposure level for teewatch\.service: ([0-9]+(\.[0-9]+)?).*/\1/p' | tail -1)"
[ -n "$score" ] || { printf '%s\n' "$report" >&2; fail "no overall exposure level in the output"; }
awk -v s="$score" -v t="$threshold" 'BEGIN { exit !(s + 0 <= t + 0) }' ||
    fail "overall exposure $score is above $threshold"

echo "== teewatch config check ROOT/etc/teewatch/config.toml"
"$root/usr/bin/teewatch" config check "$root/etc/teewatch/config.toml" >/dev/null ||
    fail "the shipped config.toml is not valid"
echo "config: valid"

echo "overall exposure: $score (threshold $threshold)"
