#!/bin/sh
# Runs each named program from out/ natively and compares its stdout, minus
# lines starting with `info:`, and its exit status (128+N for death by signal
# N, as the shell reports it: 139 for SIGSEGV) with expected/<name>.out and
# expected/<name>.status. With --bless, writes those files instead.
# Usage: check.sh [--bless] NAME...
set -u
cd "$(dirname "$0")"

bless=0
if [ "${1:-}" = --bless ]; then
	bless=1
	shift
fi

# Programs that are killed on purpose must not leave core files behind.
ulimit -c 0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

passed=0
failed=0
for name in "$@"; do
	# stdin is empty, as on the kernel; fds above 2 (e.g. make's jobserver)
	# are closed so that "fd 7 is not open" holds.
	timeout 120 "out/$name" </dev/null >"$tmp/stdout" 2>"$tmp/stderr" \
		3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&-
	status=$?
	grep -v '^info:' "$tmp/stdout" >"$tmp/filtered"
	if [ $bless = 1 ]; then
		cp "$tmp/filtered" "expected/$name.out"
		echo "$status" >"expected/$name.status"
		echo "blessed: $name (status $status)"
		continue
	fi
	want=$(cat "expected/$name.status" 2>/dev/null || echo missing)
	if [ "$status" = "$want" ] && cmp -s "expected/$name.out" "$tmp/filtered"; then
		echo "check: ok: $name (status $status)"
		passed=$((passed + 1))
	else
		echo "check: FAIL: $name: status $status (expected $want)"
		diff -u "expected/$name.out" "$tmp/filtered" | head -40
		if [ -s "$tmp/stderr" ]; then
			echo "--- stderr:"
			tail -5 "$tmp/stderr"
		fi
		failed=$((failed + 1))
	fi
done
[ $bless = 1 ] && exit 0
echo "check: $passed passed, $failed failed"
[ $failed = 0 ]
