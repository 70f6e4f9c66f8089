#!/bin/sh
# Entrypoint of the Sidecar V2 container image (Containerfile). The first
# argument chooses the role; each role is one process, exec'd, so it gets the
# container's signals (SIGTERM drains the data plane, stops lighttpd):
#
#   dataplane [OPTIONS]  sidecar-dataplane on $SIDECAR_LISTEN / $SIDECAR_METRICS_LISTEN;
#                        OPTIONS are passed on (--log-level debug, --listen ADDR:PORT)
#   admin                lighttpd with sidecar-admin and sidecar-events on $SIDECAR_ADMIN_LISTEN
#   anything else        run as given: `sidecarctl providers list`, `sidecarctl backup`, `sh`
#
# Before a role starts, the database is prepared, under a lock in the state
# volume so that two containers starting together do it once:
#   - the encryption key must be a readable file at $SIDECAR_ENCRYPTION_KEY_FILE
#     (a mounted secret); SIDECAR_ENCRYPTION_KEY in the environment is refused,
#     because `podman inspect` would show it;
#   - no database yet: `sidecarctl init` creates it, and an admin token is
#     created and printed once (only its hash is stored). When the data plane
#     listens beyond loopback ($SIDECAR_LISTEN, the image's default 0.0.0.0:9190),
#     a client token for OpenClaw is created and printed once too: the data
#     plane refuses such a listener without one, and that refusal stays (a
#     database without client tokens is never given one later);
#   - a database: `sidecarctl check` (read-only) checks the key, the schema and
#     the integrity before anything changes; an older schema is migrated
#     (`sidecarctl migrate`, which backs up first).
# Any failure: one line "sidecar: cannot start: ..." on stderr, exit 1, and
# the database is left as it was.
set -eu

: "${SIDECAR_DB:=/var/lib/sidecar/sidecar_v2.db}"
: "${SIDECAR_ENCRYPTION_KEY_FILE:=/run/secrets/sidecar_encryption_key}"
: "${SIDECAR_LISTEN:=0.0.0.0:9190}"
: "${SIDECAR_METRICS_LISTEN:=0.0.0.0:9191}"
: "${SIDECAR_ADMIN_LISTEN:=0.0.0.0:9192}"
: "${SIDECAR_LOG_LEVEL:=info}"
: "${SIDECAR_RUN_DIR:=/run/sidecar}"
export SIDECAR_DB SIDECAR_ENCRYPTION_KEY_FILE

LIGHTTPD_TEMPLATE=/usr/share/sidecar-v2/sidecar.conf.in

die() {
	echo "sidecar: cannot start: $*" >&2
	exit 1
}

# 127.x, [::1] and localhost need no client token (dataplane/main.c's rule).
is_loopback() {
	case $1 in
	127.*|\[::1\]:*|localhost:*) return 0 ;;
	*) return 1 ;;
	esac
}

# The URL the HEALTHCHECK asks: an address bound to every interface is asked on 127.0.0.1.
health_url() {
	host=${1%:*}
	port=${1##*:}
	case $host in
	0.0.0.0|'') host=127.0.0.1 ;;
	'[::]') host='[::1]' ;;
	esac
	echo "http://$host:$port$2"
}

check_key_file() {
	if [ -n "${SIDECAR_ENCRYPTION_KEY:-}" ]; then
		die "SIDECAR_ENCRYPTION_KEY is set in the environment; pass the key as a file secret instead" \
		    "(SIDECAR_ENCRYPTION_KEY_FILE, default /run/secrets/sidecar_encryption_key)"
	fi
	f=$SIDECAR_ENCRYPTION_KEY_FILE
	if [ ! -e "$f" ]; then
		die "the encryption key file $f is missing: mount the key as a secret there" \
		    "(make one with: sidecarctl keygen > encryption.key; see docs/operations.md, Containers)"
	fi
	if [ ! -r "$f" ]; then
		die "the encryption key file $f is not readable by uid $(id -u) (user sidecar):" \
		    "on the host, chown $(id -u) the file (mode 0400)"
	fi
}

# Run a sidecarctl command; on failure, its message is ours.
ctl_or_die() {
	if ! out=$(sidecarctl "$@" 2>&1); then
		die "$(echo "$out" | sed 's/^sidecarctl: //')"
	fi
	[ -z "$out" ] || echo "sidecar: $out"
}

# Create a token and print it once, with what it is for.
create_token() {
	kind=$1
	what=$2
	if ! tok=$(sidecarctl token create "--$kind" --label "container-first-start" 2>&1); then
		die "creating the $kind token: $(echo "$tok" | sed 's/^sidecarctl: //')"
	fi
	echo "sidecar: created the $what, shown only this once (only its hash is stored): $tok"
}

# An existing database: `sidecarctl check` opens it read-only, so a wrong key
# changes no byte. Refused: a key that is missing or does not match, a
# damaged database, a schema newer than this image's. Migrated: an older
# schema (`sidecarctl migrate` takes a backup first). Only reported: a
# provider row that does not decrypt (left to the programs, as on a host).
check_existing_db() {
	if out=$(sidecarctl check 2>&1); then
		return 0
	fi
	if ! echo "$out" | grep -q '^ok       encryption key matches'; then
		why=$(echo "$out" | sed -n 's/^PROBLEM  //p' | grep -v '^schema version\|^integrity_check' | head -n 1)
		[ -n "$why" ] || why=$(echo "$out" | sed 's/^sidecarctl: //' | head -n 1)
		die "$why"
	fi
	if ! echo "$out" | grep -q '^ok       integrity_check'; then
		die "$(echo "$out" | sed -n 's/^PROBLEM  \(integrity_check.*\)/\1/p') (restore a backup: docs/operations.md)"
	fi
	schema=$(echo "$out" | sed -n 's/^PROBLEM  \(schema version .*\)/\1/p')
	case $schema in
	'') ;;
	*'(run sidecarctl migrate)'*) ctl_or_die migrate ;;
	*) die "database $schema" ;;
	esac
	echo "$out" | sed -n 's/^PROBLEM  \(provider .*\)/sidecar: warning: \1/p' >&2
}

prepare_db() {
	listen=$1
	dir=$(dirname "$SIDECAR_DB")
	if [ ! -d "$dir" ] || [ ! -w "$dir" ]; then
		die "$dir is not a directory writable by uid $(id -u) (user sidecar): mount the state volume there"
	fi
	check_key_file
	# One container at a time: compose starts both roles at once.
	exec 9>>"$dir/.sidecar-setup.lock"
	flock -w 120 9 || die "another container held $dir/.sidecar-setup.lock for 120 s"
	if [ ! -s "$SIDECAR_DB" ]; then
		ctl_or_die init
		create_token admin "admin token for the admin panel"
		if ! is_loopback "$listen"; then
			create_token client "client token for OpenClaw (its apiKey for this sidecar)"
		fi
	else
		check_existing_db
	fi
	exec 9>&-
}

# The run directory (FastCGI sockets, pid file, rendered config); a
# read-only root file system gets one under /tmp.
run_dir() {
	if ! mkdir -p "$SIDECAR_RUN_DIR" 2>/dev/null || [ ! -w "$SIDECAR_RUN_DIR" ]; then
		SIDECAR_RUN_DIR=$(mktemp -d /tmp/sidecar-run.XXXXXX)
	fi
}

role_dataplane() {
	# A --listen among the options wins over $SIDECAR_LISTEN, as in sidecar-dataplane.
	listen=$SIDECAR_LISTEN
	prev=
	for a in "$@"; do
		case $a in
		--listen=*) listen=${a#--listen=} ;;
		*) [ "$prev" != --listen ] || listen=$a ;;
		esac
		prev=$a
	done
	prepare_db "$listen"
	run_dir
	health_url "$listen" /health > "$SIDECAR_RUN_DIR/health-url"
	exec sidecar-dataplane --db "$SIDECAR_DB" --listen "$SIDECAR_LISTEN" \
	    --metrics-listen "$SIDECAR_METRICS_LISTEN" --log-level "$SIDECAR_LOG_LEVEL" "$@"
}

role_admin() {
	[ $# -eq 0 ] || die "the admin role takes no options (set SIDECAR_ADMIN_LISTEN)"
	prepare_db "$SIDECAR_LISTEN"
	run_dir
	bind=${SIDECAR_ADMIN_LISTEN%:*}
	port=${SIDECAR_ADMIN_LISTEN##*:}
	conf=$SIDECAR_RUN_DIR/lighttpd.conf
	# No server.errorlog: lighttpd in the foreground logs to stderr, and the
	# FastCGI programs inherit it.
	sed -e '/^server\.errorlog/d' \
	    -e "s|@BIND@|$bind|g" -e "s|@PORT@|$port|g" \
	    -e "s|@HTDOCS@|/usr/share/sidecar-v2/htdocs|g" \
	    -e "s|@ADMIN_BIN@|/usr/bin/sidecar-admin|g" -e "s|@EVENTS_BIN@|/usr/bin/sidecar-events|g" \
	    -e "s|@DB@|$SIDECAR_DB|g" -e "s|@KEY_FILE@|$SIDECAR_ENCRYPTION_KEY_FILE|g" \
	    -e "s|@RUNDIR@|$SIDECAR_RUN_DIR|g" -e "s|@LOGDIR@|$SIDECAR_RUN_DIR|g" \
	    "$LIGHTTPD_TEMPLATE" > "$conf"
	/usr/sbin/lighttpd -tt -f "$conf" >/dev/null || die "the rendered lighttpd configuration $conf is invalid"
	health_url "$SIDECAR_ADMIN_LISTEN" / > "$SIDECAR_RUN_DIR/health-url"
	exec /usr/sbin/lighttpd -D -f "$conf"
}

case ${1:-dataplane} in
dataplane)
	[ $# -eq 0 ] || shift
	role_dataplane "$@"
	;;
admin)
	shift
	role_admin "$@"
	;;
*)
	exec "$@"
	;;
esac
