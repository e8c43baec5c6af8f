#!/usr/bin/env bash
# make stress: boots programs many times in a row and reports every boot that
# hung, panicked, locked up, leaked frames or differed from Linux's output.
#
#   N        boots per program and CPU count (default 20)
#   SMP      CPU counts, e.g. "2 4" (default "2 4")
#   PROGS    programs from user/out (default: c_madv_loop sysfuzz mmfuzz, those
#            that exist; "all": every program with an expected output)
#   J        boots run at once (default 1; the machine has few cores)
#   BOOT_TIMEOUT  seconds before a boot counts as hung (default 300)
#
# Fuzzers get a fresh seed per boot as argv[1] (`boot --arg`), printed with
# the result so a failure can be replayed. Odd-numbered boots run with
# `--zero-pool on` (off by default), even ones without, so that both frame
# paths get the stress; the setting is the result's last word. Logs of failed boots are kept in
# target/stress/; the run ends with a table and fails if any boot failed.
set -u
cd "$(dirname "$0")/.."

N=${N:-20}
SMP=${SMP:-"2 4"}
J=${J:-1}
BOOT_TIMEOUT=${BOOT_TIMEOUT:-300}
BOOT=${BOOT:-target/x86_64-unknown-linux-gnu/debug/boot}
KERNEL=${KERNEL:-target/x86_64-unknown-none/debug/kernel}
OUT=${STRESS_OUT:-target/stress}
if [ "${PROGS:-}" = all ]; then
	PROGS=""
	for f in user/expected/*.out; do
		p=$(basename "$f" .out)
		# read_line waits for console input; unmap_cost is a benchmark.
		case "$p" in read_line | unmap_cost) continue ;; esac
		[ -x "user/out/$p" ] && PROGS="$PROGS $p"
	done
elif [ -z "${PROGS:-}" ]; then
	PROGS=""
	for p in c_madv_loop sysfuzz mmfuzz; do [ -x "user/out/$p" ] && PROGS="$PROGS $p"; done
fi
for f in "$BOOT" "$KERNEL"; do
	[ -x "$f" ] || { echo "stress: $f is missing (make stress builds it)" >&2; exit 2; }
done
for p in $PROGS; do
	[ -x "user/out/$p" ] && [ -f "user/expected/$p.out" ] || { echo "stress: no user/out/$p or user/expected/$p.out" >&2; exit 2; }
done
rm -rf "$OUT" && mkdir -p "$OUT"

is_fuzzer() { case "$1" in *fuzz*) return 0 ;; *) return 1 ;; esac; }

# One boot: prints "PROG SMP I RESULT SEED POOL" (RESULT: ok, hang, panic,
# lockup, leak, wrong; POOL: the --zero-pool setting).
one_boot() {
	local prog=$1 smp=$2 i=$3 seed="-" log="$OUT/$1-smp$2-$3.log"
	local pool=off
	[ $((i % 2)) = 1 ] && pool=on
	local args=(--zero-pool "$pool")
	if is_fuzzer "$prog"; then
		seed=$(printf '0x%04x%04x%04x%04x' $RANDOM $RANDOM $RANDOM $RANDOM)
		args+=(--arg "$seed")
	fi
	timeout $((BOOT_TIMEOUT + 60)) "$BOOT" --smp "$smp" --log info --timeout "$BOOT_TIMEOUT" \
		--init "user/out/$prog" "${args[@]}" "$KERNEL" </dev/null 2>&1 | tr -d '\r' >"$log"
	local status=${PIPESTATUS[0]} result=ok
	local want_status
	want_status=$(cat "user/expected/$prog.status")
	local frames
	frames=$(grep -a -o 'frames in use before [0-9]*, after [0-9]*' "$log" | tail -1)
	if [ "$status" = 124 ]; then
		result=hang
	elif [ "$status" = 102 ]; then
		result=lockup
	elif [ "$status" = 101 ] || grep -aq 'panicked' "$log"; then
		result=panic
	elif [ -z "$frames" ] || [ "$(echo "$frames" | awk '{print $5}' | tr -d ,)" != "$(echo "$frames" | awk '{print $7}')" ] \
		|| grep -aq 'lingering\|leaked' "$log"; then
		result=leak
	elif [ "$status" != "$want_status" ] \
		|| ! diff -q <(grep -av '^\[kernel\]' "$log" | grep -av '^info:') "user/expected/$prog.out" >/dev/null; then
		result=wrong
	fi
	[ "$result" = ok ] && rm -f "$log"
	echo "$prog $smp $i $result $seed zero-pool=$pool"
}

total=0
for smp in $SMP; do for prog in $PROGS; do total=$((total + N)); done; done
echo "stress: $total boots: programs [$PROGS ], CPUs [$SMP], $N each, $J at a time, logs of failures in $OUT/"
results=$OUT/results
: >"$results"
started=$(date +%s)
done_count=0
for smp in $SMP; do
	for prog in $PROGS; do
		for i in $(seq 1 "$N"); do
			one_boot "$prog" "$smp" "$i" >>"$results" &
			while [ "$(jobs -rp | wc -l)" -ge "$J" ]; do wait -n; done
			done_count=$((done_count + 1))
			if [ $((done_count % 10)) = 0 ] || [ "$done_count" = "$total" ]; then
				elapsed=$(($(date +%s) - started))
				echo "stress: $done_count of $total started, ${elapsed}s, about $((elapsed * (total - done_count) / done_count))s left;" \
					"failures so far: $(grep -vc ' ok ' "$results")"
			fi
		done
	done
done
wait

echo
printf '%-14s %4s %6s %5s %5s %6s %7s %5s %6s\n' program cpus boots ok hang panic lockup leak wrong
failed=0
for smp in $SMP; do
	for prog in $PROGS; do
		row=$(awk -v p="$prog" -v s="$smp" '$1 == p && $2 == s { n++; c[$4]++ }
			END { printf "%d %d %d %d %d %d %d", n, c["ok"], c["hang"], c["panic"], c["lockup"], c["leak"], c["wrong"] }' "$results")
		set -- $row
		printf '%-14s %4s %6s %5s %5s %6s %7s %5s %6s\n' "$prog" "$smp" "$1" "$2" "$3" "$4" "$5" "$6" "$7"
		[ "$1" = "$2" ] || failed=1
	done
done
if [ "$failed" = 1 ]; then
	echo
	echo "stress: failed boots (program, CPUs, boot, result, seed, zero pool; logs in $OUT/):"
	grep -v ' ok ' "$results" | sort
	exit 1
fi
echo "stress: all $total boots ok"
