# Demo mode for scripts/run --demo (sourced, POSIX sh). demo_start:
#   1. starts the mock upstream (tests/mock-upstream) on 127.0.0.1:$SC_DEMO_MOCK_PORT
#      (default 9199) with five fake keys; one of them is deliberately allowed
#      only 4 requests per minute upstream while the sidecar believes it has 15,
#      so it answers 429 and the dashboard shows a cooldown;
#   2. imports the matching demo providers (prefix "demo/") into $SIDECAR_DB
#      with `$ctl import`;
#   3. starts scripts/traffic-gen against the data plane (127.0.0.1:9190) at
#      about 50 requests per minute with a short burst now and then, which is
#      more than the main pool's 45 RPM, so the queue and the fallback pool
#      show up too.
# It exports SIDECAR_DEMO=1, which the data plane reports as "demo": true in
# its live status snapshot, and the page shows a DEMO banner.
# Needs from scripts/run: $top, $build, $var, $ctl, $SIDECAR_DB; appends to $pids.

demo_keys_main="nvapi-DEMO-0001-xxxxxxxxxxxxxxxx nvapi-DEMO-0002-xxxxxxxxxxxxxxxx nvapi-DEMO-0003-xxxxxxxxxxxxxxxx"
demo_key_limited="nvapi-DEMO-0004-ratelimitedxxxxx"
demo_key_fallback="nvapi-DEMO-0005-fallbackxxxxxxxx"

# Wait until a TCP port on 127.0.0.1 accepts connections (curl only), up to ~10 s.
demo_wait_port() {
	i=0
	while [ $i -lt 100 ]; do
		if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$1/v1/models" \
			-H "Authorization: Bearer $demo_key_fallback"; then
			return 0
		fi
		i=$((i + 1))
		sleep 0.1
	done
	return 1
}

# The demo providers as a provider file in the design's YAML format.
demo_yaml() {
	n=0
	echo "# Demo providers written by scripts/demo.sh: fake keys against the local mock upstream."
	echo "providers:"
	for k in $demo_keys_main; do
		n=$((n + 1))
		cat <<EOF
- account: demo-main-$n
  email: demo@example.invalid
  api_key: $k
  endpoint_url: http://127.0.0.1:$demo_mock_port/v1
  model_prefix: "demo/"
  pool: main
  rpm_limit: 15
  notes: "demo key"
EOF
	done
	cat <<EOF
- account: demo-main-4-limited
  email: demo@example.invalid
  api_key: $demo_key_limited
  endpoint_url: http://127.0.0.1:$demo_mock_port/v1
  model_prefix: "demo/"
  pool: main
  rpm_limit: 15
  notes: "demo key; the mock allows it only 4 RPM, so it gets 429s and cools down"
- account: demo-fallback-1
  email: demo@example.invalid
  api_key: $demo_key_fallback
  endpoint_url: http://127.0.0.1:$demo_mock_port/v1
  model_prefix: "demo/"
  pool: fallback
  rpm_limit: 20
  notes: "demo fallback key"
EOF
}

demo_start() {
	demo_mock_port=${SC_DEMO_MOCK_PORT:-9199}
	mock="$build/tests/mock-upstream"
	if [ ! -x "$mock" ]; then
		echo "scripts/demo.sh: $mock is missing (make tests/mock-upstream)" >&2
		exit 1
	fi
	set -- --listen "127.0.0.1:$demo_mock_port" --latency-ms 250 --chunks 8 --chunk-interval-ms 40 --quiet
	for k in $demo_keys_main; do
		set -- "$@" --key "$k:40"
	done
	set -- "$@" --key "$demo_key_limited:4" --key "$demo_key_fallback:40"
	"$mock" "$@" >"$var/log/demo-mock.log" 2>&1 &
	pids="$pids $!"
	if ! demo_wait_port "$demo_mock_port"; then
		echo "scripts/demo.sh: the mock upstream did not start on port $demo_mock_port (see $var/log/demo-mock.log)" >&2
		exit 1
	fi

	umask 077
	demo_yaml > "$var/demo-providers.yaml"
	"$ctl" --db "$SIDECAR_DB" import "$var/demo-providers.yaml" >/dev/null

	export SIDECAR_DEMO=1
	# The data plane starts after us: give it a moment before the first request.
	(sleep 2; exec "$top/scripts/traffic-gen" --url "http://127.0.0.1:${SC_DATAPLANE_PORT:-9190}" \
		--rpm "${SC_DEMO_RPM:-50}" --burst 12 --models "demo/mock-small demo/mock-large") \
		>"$var/log/demo-traffic.log" 2>&1 &
	pids="$pids $!"
	echo "Demo mode: mock upstream on 127.0.0.1:$demo_mock_port with 5 fake keys (demo-main-4-limited is rate-limited upstream), traffic generator at ${SC_DEMO_RPM:-50} RPM."
}
