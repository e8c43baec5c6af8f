# The two commands a user needs: `make run` and `make test`.
# Each target first installs what it needs (toolchain components, QEMU).

SMP ?= 2
MEM ?= 512M
# Seconds before `boot` gives up on a hung guest.
BOOT_TIMEOUT ?= 300
# Kernel log level (given to the kernel at boot): error, warn, info, debug, trace.
KERNEL_LOG ?= warn
# How page faults lock: vma (per-VMA locks, the default) or mmap (always the
# address space's mmap lock, as Linux before 6.4), to compare the two designs.
LOCK ?= vma
KERNEL_LOCK ?= $(LOCK)
# Work the kernel does ahead of faults, each on or off: idle CPUs zeroing
# free frames (ZERO_POOL, off by default), and mapping the rest of a 64 KiB
# block on a sequential run of anonymous faults (FAULT_AROUND, on by default).
ZERO_POOL ?= off
KERNEL_ZERO_POOL ?= $(ZERO_POOL)
FAULT_AROUND ?= on
KERNEL_FAULT_AROUND ?= $(FAULT_AROUND)
# The program to run as /init (default: our demo), and its arguments
# (words, each becomes one of argv[1..]).
INIT ?= user/out/demo
ARGS ?=
export SMP MEM BOOT_TIMEOUT KERNEL_LOG KERNEL_LOCK KERNEL_ZERO_POOL KERNEL_FAULT_AROUND

HOST   := x86_64-unknown-linux-gnu
KARCH  := x86_64-unknown-none
BOOT   := target/$(HOST)/debug/boot
# The kernel build that `make run` and `make image` boot: optimised, without
# debug assertions, unless PROFILE=dev (today's checked build, for debugging).
# `make test` and `make stress` always use the dev build, checks on.
PROFILE ?= release
KERNEL := target/$(KARCH)/$(if $(filter dev,$(PROFILE)),debug,release)/kernel
IMAGE  ?= target/kernel.img
# CPU counts the test suite boots the kernel unit tests under (several of
# them need a second CPU; programs run on 1 CPU too, in tests/programs.rs).
TEST_SMP ?= 2 4

.PHONY: all run test lint host-test model-test stress bench image clean setup toolchain qemu musl build user profile

all: build

setup: toolchain qemu

# rustup does not install a toolchain file's components by itself.
toolchain:
	@if ! rustup component list --installed 2>/dev/null | grep -q '^rust-src' \
	   || ! rustup component list --installed 2>/dev/null | grep -q '^llvm-tools' \
	   || ! rustup component list --installed 2>/dev/null | grep -q '^clippy' \
	   || ! rustup component list --installed 2>/dev/null | grep -q '^rustfmt' \
	   || ! rustup target list --installed 2>/dev/null | grep -q '^$(KARCH)$$'; then \
		echo "make: installing the pinned toolchain (rust-toolchain.toml)"; \
		rustup toolchain install || { echo "make: rustup could not install the toolchain" >&2; exit 1; }; \
	fi

qemu:
	@if ! command -v qemu-system-x86_64 >/dev/null 2>&1; then \
		echo "make: installing QEMU (qemu-system-x86)"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null 2>&1; then SUDO=sudo; \
		else echo "make: qemu-system-x86_64 is missing and we are not root: install qemu-system-x86" >&2; exit 1; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq qemu-system-x86 \
			|| { echo "make: could not install qemu-system-x86; install it by hand" >&2; exit 1; }; \
	fi

# musl-gcc builds the musl test programs in user/ (Debian's musl-tools).
musl:
	@if ! command -v musl-gcc >/dev/null 2>&1; then \
		echo "make: installing musl-gcc (musl-tools)"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null 2>&1; then SUDO=sudo; \
		else echo "make: musl-gcc is missing and we are not root: install musl-tools" >&2; exit 1; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq musl-tools \
			|| { echo "make: could not install musl-tools; install it by hand" >&2; exit 1; }; \
	fi

build: toolchain
	cargo build -p boot --target $(HOST)
	cargo build -p kernel --bin kernel --target $(KARCH) $(if $(filter dev,$(PROFILE)),,--release) $(if $(KERNEL_FEATURES),--features $(KERNEL_FEATURES))

# Our user programs (Rust no_std and gcc -static -nostdlib), into user/out/.
user: toolchain musl
	$(MAKE) -C user --no-print-directory

# The exit status is init's. GNU make itself can only exit with 0 or 2, so a
# non-zero status also shows in make's "Error N" line (and in `boot`'s own
# exit status when run directly).
run: setup build user
	@$(BOOT) --smp $(SMP) --mem $(MEM) --init $(INIT) $(foreach a,$(ARGS),--arg $(a)) $(KERNEL)

# Where the kernel spends its time while INIT runs: a sampling profile
# (boot --profile), its addresses named by tests/profile.sh.
profile: setup build user
	@$(BOOT) --smp $(SMP) --mem $(MEM) --profile --init $(INIT) $(foreach a,$(ARGS),--arg $(a)) $(KERNEL) \
		| tests/profile.sh $(KERNEL)

image: toolchain build user
	$(BOOT) --image-only --image $(IMAGE) --init $(INIT) $(KERNEL)

# One format and one lint bar for every crate, the user programs included.
lint: toolchain
	cargo fmt --all -- --check
	cd user && cargo fmt --all -- --check
	cargo clippy -p kernel --target $(KARCH) --lib --bins --tests -- -D warnings
	cargo clippy -p boot -p e2e -p bench --target $(HOST) --all-targets -- -D warnings
	cargo clippy -p vmatree --target $(HOST) --all-targets -- -D warnings
	cargo clippy -p vmatree --target $(KARCH) -- -D warnings
	cargo clippy -p frames --target $(HOST) --all-targets -- -D warnings
	cargo clippy -p frames --target $(KARCH) -- -D warnings
	cargo clippy -p mmsync --target $(HOST) --all-targets -- -D warnings
	cargo clippy -p mmsync --target $(KARCH) -- -D warnings
	$(LOOM_ENV) cargo clippy -p mmsync --target $(HOST) --all-targets -- -D warnings
	cd user && cargo clippy --release --target $(KARCH) -- -D warnings

# Host tests of the kernel's crates that need no QEMU: the VMA tree's unit,
# property and scale tests (kernel/vmatree), the frame bitmap's property
# tests (kernel/frames) and mmsync's plain unit tests.
host-test: toolchain
	cargo test -p vmatree -p frames -p mmsync --target $(HOST)

# Model checking (kernel/mmsync): the per-VMA lock, RCU's grace-period
# bookkeeping and the freed-table rule, the same code the kernel runs, under
# loom's atomics. Its own
# target dir (a different RUSTFLAGS would rebuild the host crates each time);
# release for speed, debug assertions kept (the kernel's own checks).
LOOM_ENV := RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom
model-test: toolchain
	RUST_BACKTRACE=0 $(LOOM_ENV) CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS=true cargo test -p mmsync --target $(HOST) --release -- --test-threads=1 --nocapture

# The lint bar first (it fails fast), then the host tests of the kernel's
# crates and their models, host unit tests of `boot` and `bench`, the in-kernel suites (each test binary
# boots in QEMU through the cargo runner), then the end-to-end tests in tests/.
test: setup lint host-test model-test user
	cargo test -p boot -p bench --target $(HOST)
	set -e; for n in $(TEST_SMP); do echo "== kernel unit tests, SMP=$$n"; SMP=$$n cargo test -p kernel --target $(KARCH) --lib; done
	SMP=4 cargo test -p kernel --target $(KARCH) --test '*'
	cargo test -p e2e --target $(HOST)

# Not part of `make test`: boots the hang reproducer and the fuzzers many
# times (N per program and CPU count) and reports hangs, panics, lockups,
# leaks and wrong output with the seed. SMP here is a list, "2 4" unless given.
N ?= 20
stress: setup user
	@$(MAKE) --no-print-directory build PROFILE=dev
	N=$(N) J=$(or $(J),1) SMP="$(if $(filter command line,$(origin SMP)),$(SMP),2 4)" tests/stress.sh

# Not part of `make test`: the benchmark programs on the release kernel on
# 1, 2 and 4 CPUs in both lock modes, 3 runs each (QUICK=1: one shorter run);
# LINUX=1 adds Linux 6.12 (fetched and cached by bench/fetch-linux.sh).
# Tables on stdout; target/bench/results.json and SVG plots (bench/ is a
# host program, built for the host target only, never with the kernel).
# BENCH_ARGS passes more options (e.g. --runs 5, --cpus 1,2).
bench: setup user
	cargo build -p boot -p bench --target $(HOST)
	cargo build -p kernel --bin kernel --target $(KARCH) --release
	@target/$(HOST)/debug/bench --boot $(BOOT) --kernel target/$(KARCH)/release/kernel \
		$(if $(QUICK),--quick) $(if $(LINUX),--linux "$$(bench/fetch-linux.sh)") $(BENCH_ARGS)

clean:
	cargo clean
	$(MAKE) -C user clean
