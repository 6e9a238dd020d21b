#!/usr/bin/env bash
# Builds the Debian bookworm root that tests/systemd boots with systemd-nspawn (`make
# systemd-root`; about 90 s, once). It holds systemd 252, dbus, polkitd (JavaScript rules),
# Debian's restic and a venv with Steward's runtime dependencies at /opt/steward/venv. Steward's
# own code is not copied in: the suite binds the checkout read-only at /opt/steward/src, so the
# root is rebuilt only when pyproject.toml (the dependencies) or this script changes.
# Usage: build-root.sh ROOT CHECKOUT (as root).
set -euo pipefail
root="$1"
checkout="$(cd "$2" && pwd)"
tmp="$root.tmp"
packages=systemd,systemd-sysv,dbus,polkitd,libpam-systemd,python3,python3-venv,restic

rm -rf "$tmp"
# libpam-systemd: without logind polkitd stays unconfigured (FIELD-NOTES).
debootstrap --variant=minbase --include="$packages" bookworm "$tmp" http://deb.debian.org/debian

# Wheels come through the host's pip (its index and certificate settings); the root installs
# them offline. Host and root are both CPython 3.11 on glibc 2.36, so the same wheels fit.
wheels="$tmp/tmp/wheels"
mkdir -p "$wheels"
python3 - "$checkout/pyproject.toml" > "$tmp/tmp/requirements.txt" <<'PY'
import sys, tomllib
with open(sys.argv[1], "rb") as handle:
    print("\n".join(tomllib.load(handle)["project"]["dependencies"]))
PY
python3 -m pip download --quiet --only-binary=:all: -d "$wheels" -r "$tmp/tmp/requirements.txt"
chroot "$tmp" python3 -m venv /opt/steward/venv
chroot "$tmp" /opt/steward/venv/bin/pip install --quiet --no-index --find-links /tmp/wheels \
    -r /tmp/requirements.txt
rm -rf "$wheels" "$tmp/tmp/requirements.txt"
# The checkout, bound at /opt/steward/src, is on the venv's path.
site="$(chroot "$tmp" /opt/steward/venv/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"
echo /opt/steward/src > "$tmp$site/steward-src.pth"
mkdir -p "$tmp/opt/steward/src"
apt_clean() { rm -rf "$tmp/var/cache/apt/archives/"*.deb "$tmp/var/lib/apt/lists/"*; }
apt_clean

rm -rf "$root"
mv "$tmp" "$root"
