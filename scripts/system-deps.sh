#!/usr/bin/env bash
# Make sure the OS packages twinstack needs are present: install them when running as root on
# Debian/Ubuntu, otherwise say exactly what to install and fail.
# Usage: scripts/system-deps.sh nginx [python3-venv ...]
set -euo pipefail

have() {
  case "$1" in
    nginx)        command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] ;;
    logrotate)    command -v logrotate >/dev/null || [ -x /usr/sbin/logrotate ] ;;
    python3-venv) python3 -c 'import ensurepip, venv' 2>/dev/null ;;
    prometheus)   command -v prometheus >/dev/null && command -v promtool >/dev/null ;;
    postgresql)   command -v initdb >/dev/null || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null ;;
    pgbouncer)    command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ] ;;
    testssl.sh)   command -v testssl >/dev/null || command -v testssl.sh >/dev/null ;;
    *)            command -v "$1" >/dev/null ;;
  esac
}

missing=()
for pkg in "$@"; do
  have "$pkg" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  echo "Installing OS packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  exit 0
fi

echo "error: missing OS packages: ${missing[*]}" >&2
if command -v apt-get >/dev/null; then
  echo "  install them with: sudo apt-get install ${missing[*]}" >&2
else
  echo "  install them with your system's package manager (e.g. brew install ${missing[*]})" >&2
fi
exit 1
