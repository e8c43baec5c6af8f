#!/bin/sh
# Names the functions in a kernel profile: reads what `boot --profile` printed
# on standard input, passes it through, and follows each "profile: COUNT
# OFFSET" line with the functions at OFFSET (inlined ones joined by <, the
# innermost first). `make profile INIT=prog` runs it.
# Usage: boot --profile --init PROG KERNEL | tests/profile.sh KERNEL
set -eu
kernel=${1:?usage: tests/profile.sh KERNEL < boot-output}
addr2line=$(command -v llvm-addr2line || ls "$(rustc --print sysroot)"/lib/rustlib/*/bin/llvm-addr2line 2>/dev/null | head -n 1 || true)
if [ -z "$addr2line" ]; then
	echo "profile.sh: no llvm-addr2line (rustup component add llvm-tools)" >&2
	exit 1
fi
tr -d '\r' | while IFS= read -r line; do
	printf '%s\n' "$line"
	case $line in
	*"profile: "[0-9]*" 0x"*)
		offset=${line##* }
		names=$("$addr2line" -fCie "$kernel" "$offset" | awk 'NR % 2 == 1' | paste -sd '<' - | cut -c1-200)
		printf '    %s\n' "$names"
		;;
	esac
done
