#!/usr/bin/env bash
# Fetches Debian trixie's Linux 6.12 cloud kernel into the cache, as
# ../shared/linux-peer does (same cache directory, so either reuses the
# other's download), and prints its path. `make bench LINUX=1` runs it.
set -eu
cache=${LINUX_PEER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/linux-peer}
kernel=$cache/vmlinuz-6.12
mkdir -p "$cache"
if [ ! -f "$kernel" ]; then
  echo "fetch-linux: downloading Debian trixie's linux-image-6.12 cloud package (about a minute)" >&2
  # The machine's own Debian mirror, with the trixie suite (6.12 is trixie's kernel).
  mirror=$(grep -hoE '^(URIs:|deb) +[^ ]+/debian/?( |$)' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
           | head -1 | awk '{print $2}')
  [ -n "$mirror" ] || { echo "fetch-linux: no Debian mirror in the apt sources" >&2; exit 2; }
  d=$cache/apt; mkdir -p "$d/lists/partial"
  echo "deb $mirror trixie main" > "$d/sources.list"
  o="-o Dir::Etc::SourceList=$d/sources.list -o Dir::Etc::SourceParts=- -o Dir::State::Lists=$d/lists"
  # shellcheck disable=SC2086
  apt-get $o update >/dev/null 2>&1
  # shellcheck disable=SC2086
  pkg=$(apt-cache $o search --names-only '^linux-image-6\.12.*-cloud-amd64$' 2>/dev/null | sort -V | tail -1 | cut -d' ' -f1)
  [ -n "$pkg" ] || { echo "fetch-linux: no linux-image-6.12 cloud package found" >&2; exit 2; }
  # shellcheck disable=SC2086
  (cd "$cache" && apt-get $o download "$pkg" >/dev/null 2>&1) || { echo "fetch-linux: download of $pkg failed" >&2; exit 2; }
  rm -rf "$cache/x" && dpkg -x "$cache"/linux-image-6.12*.deb "$cache/x" && cp "$cache"/x/boot/vmlinuz-* "$kernel" && rm -rf "$cache/x"
  [ -f "$kernel" ] || { echo "fetch-linux: could not unpack the kernel" >&2; exit 2; }
fi
echo "$kernel"
