#!/usr/bin/env bash
# bench-compare: runs user/out/fault_bench on Linux 6.12 (../shared/linux-peer)
# and on our release kernel back to back, N times each, in the same QEMU, and
# prints a table: case | Linux 6.12 | ours | ratio (ours / Linux).
#
#   tests/bench-compare.sh            # N=2, SMP=2
#   N=3 tests/bench-compare.sh
#
#   N     boots per kernel (default 2), alternating Linux, ours, Linux, ours...
#   SMP   CPUs of both (default 2)
#   PEER  the linux-peer script (default ../shared/linux-peer)
#   OURS_ARGS  more boot options for our kernel, e.g. "--zero-pool off"
#   OURS2_ARGS if set, a second configuration of ours, booted after each of
#              the first and shown in its own columns (compare two settings
#              in one sitting), e.g. OURS2_ARGS="--zero-pool off"
#
# Rates are pages faulted per million TSC ticks: the median of every timed run
# of every boot (fault_bench makes 3 per boot), with min-max. Latency rows are
# TSC cycles per first write to a fresh page: the median over the runs of each
# run's min, median and 99th percentile. Ratio is ours / Linux: higher is
# better for rates, lower for cycles. Logs of each boot are kept in
# target/bench-compare/. Here and not in user/ because it builds and boots
# the kernel (like tests/stress.sh); user/ holds programs and their native
# checker. Not part of `make test`: its output is figures, and the machine is
# shared, so compare kernels only within one run of this script.
set -u
cd "$(dirname "$0")/.."

N=${N:-2}
SMP=${SMP:-2}
PEER=${PEER:-../shared/linux-peer}
BOOT=target/x86_64-unknown-linux-gnu/debug/boot
KERNEL=target/x86_64-unknown-none/release/kernel
PROG=user/out/fault_bench
OUT=target/bench-compare

[ -x "$PEER" ] || { echo "bench-compare: $PEER is missing" >&2; exit 2; }
echo "bench-compare: building boot, the release kernel and the user programs" >&2
cargo build -q -p boot --target x86_64-unknown-linux-gnu || exit 2
cargo build -q --release -p kernel --bin kernel --target x86_64-unknown-none || exit 2
make -s -C user rust >/dev/null || exit 2

mkdir -p "$OUT"
rm -f "$OUT"/linux.*.log "$OUT"/ours.*.log "$OUT"/ours2.*.log
fail=0
for i in $(seq 1 "$N"); do
	echo "bench-compare: boot $i of $N: Linux 6.12" >&2
	"$PEER" "$PROG" "$SMP" >"$OUT/linux.$i.log" 2>&1
	st=$?
	[ $st = 0 ] || { echo "bench-compare: Linux boot $i: status $st (see $OUT/linux.$i.log)" >&2; fail=1; }
	echo "bench-compare: boot $i of $N: ours" >&2
	# shellcheck disable=SC2086 # OURS_ARGS is a list of words
	"$BOOT" --smp "$SMP" ${OURS_ARGS:-} --init "$PROG" "$KERNEL" >"$OUT/ours.$i.log" 2>&1
	st=$?
	[ $st = 0 ] || { echo "bench-compare: our boot $i: status $st (see $OUT/ours.$i.log)" >&2; fail=1; }
	[ -n "${OURS2_ARGS:-}" ] || continue
	echo "bench-compare: boot $i of $N: ours, $OURS2_ARGS" >&2
	# shellcheck disable=SC2086 # OURS2_ARGS is a list of words
	"$BOOT" --smp "$SMP" $OURS2_ARGS --init "$PROG" "$KERNEL" >"$OUT/ours2.$i.log" 2>&1
	st=$?
	[ $st = 0 ] || { echo "bench-compare: our boot $i ($OURS2_ARGS): status $st (see $OUT/ours2.$i.log)" >&2; fail=1; }
done

# One line per figure of a kernel's logs: "KEY VALUE" (rates in pages/Mtick,
# latency in cycles, one line per timed run).
figures() {
	cat "$@" | tr -d '\r' | awk '
		/^fault_bench: [a-z_0-9]+ run [0-9]+: [0-9.]+ pages\/Mtick/ { print $2, $5; next }
		/^fault_bench: latency run [0-9]+: min / {
			print "latency_min", $6; print "latency_median", $8; print "latency_p99", $10
		}'
}

# "median lo hi" of KEY's values in a figures file, or "- - -".
summary() {
	awk -v k="$1" '$1 == k { print $2 }' "$2" | sort -g | awk '
		{ v[NR] = $1 }
		END {
			if (NR == 0) { print "- - -"; exit }
			m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
			print m, v[1], v[NR]
		}'
}

figures "$OUT"/linux.*.log >"$OUT/linux.figures"
figures "$OUT"/ours.*.log >"$OUT/ours.figures"
[ -z "${OURS2_ARGS:-}" ] || figures "$OUT"/ours2.*.log >"$OUT/ours2.figures"

printf '\nfault_bench, %s boot(s) per kernel, SMP=%s, %s (rates: pages/Mtick, median of runs (min-max); latency: TSC cycles)\n\n' \
	"$N" "$SMP" "$(date -u +%Y-%m-%d)"
if [ -n "${OURS2_ARGS:-}" ]; then
	printf '| case | Linux 6.12 | ours | ratio | ours, %s | ratio |\n|---|---|---|---|---|---|\n' "$OURS2_ARGS"
	kernels="ours ours2"
else
	printf '| case | Linux 6.12 | ours | ratio |\n|---|---|---|---|\n'
	kernels="ours"
fi
for key in map_touch_unmap map_touch_unmap_4k touch_dontneed map_128m two_threads latency_min latency_median latency_p99; do
	read -r lm ll lh <<<"$(summary "$key" "$OUT/linux.figures")"
	row="| $key | $(awk -v k="$key" -v m="$lm" -v lo="$ll" -v hi="$lh" 'BEGIN {
		f = (k ~ /^latency/) ? "%.0f (%.0f-%.0f)" : "%.1f (%.1f-%.1f)"
		printf "%s", (m == "-") ? "-" : sprintf(f, m, lo, hi)
	}')"
	for kernel in $kernels; do
		read -r om ol oh <<<"$(summary "$key" "$OUT/$kernel.figures")"
		row="$row | $(awk -v k="$key" -v lm="$lm" -v om="$om" -v ol="$ol" -v oh="$oh" 'BEGIN {
			f = (k ~ /^latency/) ? "%.0f (%.0f-%.0f)" : "%.1f (%.1f-%.1f)"
			o = (om == "-") ? "-" : sprintf(f, om, ol, oh)
			r = (lm == "-" || om == "-" || lm == 0) ? "-" : sprintf("%.2f", om / lm)
			printf "%s | %s", o, r
		}')"
	done
	echo "$row |"
done
# two_threads against touch_dontneed, per kernel (the issue wants >= 1.7 on ours).
scaling() {
	read -r one _ <<<"$(summary touch_dontneed "$OUT/$1.figures")"
	read -r two _ <<<"$(summary two_threads "$OUT/$1.figures")"
	awk -v one="$one" -v two="$two" 'BEGIN { printf "%s", (one == "-" || one == 0) ? "-" : sprintf("x%.2f", two / one) }'
}
row="| two_threads / touch_dontneed | $(scaling linux)"
for kernel in $kernels; do row="$row | $(scaling "$kernel") |"; done
echo "$row |"
exit $fail
