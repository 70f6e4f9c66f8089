#!/bin/sh
# Make the Debian 12 base image the container test builds on, unless it is
# already there: no image registry is reachable from CI machines, so
# `debootstrap --variant=minbase bookworm` into a directory (from the Debian
# mirror apt already uses), trimmed of apt's caches like debian:12-slim, and
# `podman import`ed.
#
#   tests/container/base-image.sh [IMAGE]     default localhost/sidecar-test-base:bookworm
#
# Prints the image name on stdout. Needs root (debootstrap) and podman.
set -eu
image=${1:-localhost/sidecar-test-base:bookworm}
if podman image exists "$image"; then
	echo "$image"
	exit 0
fi

# The first Debian mirror in apt's sources (deb822 or one-line format).
mirror=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
	awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i ~ /debian\/?$/) { print $i; exit } }')
if [ -z "$mirror" ]; then
	mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
		awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^https?:.*debian\/?$/) { print $i; exit } }')
fi
mirror=${mirror:-http://deb.debian.org/debian}

dir=$(mktemp -d "${TMPDIR:-/var/tmp}/sc-base.XXXXXX")
trap 'rm -rf "$dir"' EXIT
t0=$(date +%s)
echo "base-image: debootstrap --variant=minbase bookworm from $mirror" >&2
if ! debootstrap --variant=minbase bookworm "$dir/root" "$mirror" > "$dir/debootstrap.log" 2>&1; then
	tail -n 30 "$dir/debootstrap.log" >&2
	echo "base-image: debootstrap failed" >&2
	exit 1
fi
rm -rf "$dir/root/var/cache/apt/"* "$dir/root/var/lib/apt/lists/"* "$dir/root/var/log/"*.log
tar -C "$dir/root" -c . | podman import -q --change 'CMD ["/bin/bash"]' - "$image" >/dev/null
echo "base-image: made $image in $(( $(date +%s) - t0 )) s" >&2
echo "$image"
