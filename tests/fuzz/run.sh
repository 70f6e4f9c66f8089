#!/bin/sh
# Run each built libFuzzer harness for N seconds over its corpus, for CI.
#
#   tests/fuzz/run.sh [SECONDS] [BUILDDIR]
#
# BUILDDIR is a tree configured with CC=clang --enable-fuzzing and built
# (default: the current directory). Each harness runs over a scratch copy of
# tests/fuzz/corpus/<harness>/ (new inputs found stay out of the source tree),
# with -max_len 65536; a crash input is left as <harness>-crash-* in
# $FUZZ_ARTIFACTS (default: BUILDDIR/fuzz-artifacts). Add it to the corpus as a
# regression once fixed. Exit status: 0 when every harness ran clean, 1 when
# one crashed, 2 when a harness is missing.
set -u
secs=${1:-60}
build=${2:-.}
here=$(cd "$(dirname "$0")" && pwd)
artifacts=${FUZZ_ARTIFACTS:-$build/fuzz-artifacts}
work=$(mktemp -d "${TMPDIR:-/tmp}/sc-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
mkdir -p "$artifacts"
status=0
for h in fuzz_http fuzz_chunked fuzz_sse fuzz_shape; do
	bin=$build/tests/fuzz/$h
	if [ ! -x "$bin" ]; then
		echo "run.sh: $bin not built (configure CC=clang --enable-fuzzing; make)" >&2
		status=2
		continue
	fi
	mkdir -p "$work/$h"
	cp "$here/corpus/$h/"* "$work/$h/" 2>/dev/null
	echo "== $h: ${secs}s"
	if "$bin" -max_total_time="$secs" -max_len=65536 -print_final_stats=1 \
	    -artifact_prefix="$artifacts/$h-" "$work/$h" > "$work/$h.log" 2>&1; then
		grep -E '^(Done|stat::number_of_executed_units)' "$work/$h.log"
	else
		echo "== $h FAILED; log tail:"
		tail -n 40 "$work/$h.log"
		[ "$status" -eq 0 ] && status=1
	fi
done
exit $status
