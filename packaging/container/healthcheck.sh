#!/bin/sh
# HEALTHCHECK of the Sidecar V2 image: asks the running role's health URL,
# written by sidecar-entrypoint (the data plane's /health, 200 while a provider
# can serve; the admin panel's front page). A container running a one-off
# command (`sidecarctl backup`) has no URL and counts as healthy.
url=
for f in "${SIDECAR_RUN_DIR:-/run/sidecar}/health-url" /tmp/sidecar-run.*/health-url; do
	if [ -r "$f" ]; then
		url=$(cat "$f")
		break
	fi
done
[ -n "$url" ] || exit 0
exec curl -fsS -o /dev/null --max-time 4 "$url"
