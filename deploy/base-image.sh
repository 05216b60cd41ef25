#!/usr/bin/env bash
# Make a local base image when no container registry can be reached: Debian bookworm (minbase) with
# python3 + venv, tini and the CA bundle, made by mmdebstrap from Debian's own mirrors and `podman import`ed.
#
#   deploy/base-image.sh [TAG]          # default localhost/mushroom-base:bookworm
#   BASE_TAR=build/base.tar deploy/base-image.sh   # keep (or reuse) the tarball
#
# Then: podman build --build-arg BASE=localhost/mushroom-base:bookworm ... (see docs/deployment.md).
# Needs root, mmdebstrap and podman (Debian: apt-get install -y mmdebstrap podman runc).
set -euo pipefail
tag="${1:-localhost/mushroom-base:bookworm}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
security="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
packages="python3,python3-venv,tini,ca-certificates"
tar="${BASE_TAR:-}"
cleanup_tar=""
if [ -z "$tar" ]; then
  tar="$(mktemp --suffix=.tar)"
  cleanup_tar="$tar"
fi
trap '[ -z "$cleanup_tar" ] || rm -f "$cleanup_tar"' EXIT
if [ ! -s "$tar" ]; then
  # docs, man pages and locales are left out (dpkg path-exclude); apt's lists are removed at the end
  mmdebstrap --variant=minbase --mode=root --quiet --include="$packages" \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
    bookworm "$tar" \
    "deb $mirror bookworm main" "deb $mirror bookworm-updates main" "deb $security bookworm-security main"
fi
podman import --quiet --change 'CMD ["/bin/bash"]' \
  --change 'ENV LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  "$tar" "$tag" >/dev/null
echo "$tag"
