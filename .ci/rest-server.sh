#!/usr/bin/env bash
# restic's rest-server for the `rest:` repository tests. Debian 12 does not package it; Debian
# 13 (trixie) does. Its .deb is fetched from the Debian archive, checked against the SHA256
# pinned here (from trixie's Packages index), and only the binary is unpacked into DEST: no
# trixie package is installed on the system. It depends on libc6 >= 2.34 (bookworm has 2.36)
# and adduser (for its maintainer scripts, which are not run).
set -euo pipefail

DEST=${1:-.tools}
FILENAME=pool/main/r/restic-rest-server/restic-rest-server_0.13.0-2_amd64.deb
SHA256=a493b3ddc6a89b8a01a35c4f72ee1aa87ff4cd84041bbd464c5775188495766d
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

if [ "$(dpkg --print-architecture)" != amd64 ]; then
    echo "rest-server: only the amd64 package is pinned; the rest: tests will be skipped" >&2
    exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
deb="$work/rest-server.deb"
curl --fail --silent --show-error --location --max-time 300 -o "$deb" "$MIRROR/$FILENAME" || {
    echo "rest-server: cannot download $MIRROR/$FILENAME (a newer trixie revision may have" \
        "replaced it: take its Filename and SHA256 from dists/trixie/main/binary-amd64/Packages.xz)" >&2
    exit 1
}
echo "$SHA256  $deb" | sha256sum --check --quiet - || {
    echo "rest-server: $FILENAME does not have the pinned SHA256; not used" >&2
    exit 1
}
dpkg-deb -x "$deb" "$work/root"
mkdir -p "$DEST"
install -m 0755 "$work/root/usr/bin/restic-rest-server" "$DEST/rest-server.tmp"
mv -f "$DEST/rest-server.tmp" "$DEST/rest-server"
"$DEST/rest-server" --version
