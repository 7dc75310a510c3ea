#!/usr/bin/env bash
# Installs what the test suite needs, idempotently: cargo-deny, a real Thunderbird (Debian
# package) for the end-to-end checks and util-linux's `unshare`, which the e2e
# tests use to show Thunderbird our policies.json without touching the real /etc;
# plist and CMS checkers for Apple Mail; Python's joserfc and cryptography (independent JWS
# verifiers); then Wine and the Windows cross
# toolchain (scripts/windows.sh deps) for the Outlook tests against Wine's registry.
set -euo pipefail

need_apt=()
dpkg -s thunderbird >/dev/null 2>&1 || need_apt+=(thunderbird)
command -v unshare >/dev/null 2>&1 || need_apt+=(util-linux)
# postwarden-service: `systemd-analyze verify`/`security` check the unit, and its lifecycle
# test boots systemd (/lib/systemd/systemd, systemctl) in namespaces; util-linux's setpriv,
# nsenter, taskset and chrt (from the line above) drive and probe it.
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
# Independent readers of what we write for Apple Mail: plistutil (libplist) next to Python's
# plistlib, and the openssl command line, which checks our CMS signatures (a test oracle only:
# the product links no OpenSSL).
command -v plistutil >/dev/null 2>&1 || need_apt+=(libplist-utils)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
# The policy server's tests run every API test on PostgreSQL too, on a throwaway cluster they
# start themselves (tests/support/src/pg.rs); curl checks the certificate pin format.
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need_apt+=(postgresql)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
# postwarden-desktop's tests run a real session bus (dbus-daemon), ask it who owns a name
# (dbus-send), and drop to another user the way the agent does (util-linux's setpriv).
command -v dbus-daemon >/dev/null 2>&1 || need_apt+=(dbus-daemon)
command -v dbus-send >/dev/null 2>&1 || need_apt+=(dbus-bin)
command -v setpriv >/dev/null 2>&1 || need_apt+=(util-linux)
# The dashboard's tests drive a real headless Chromium (Debian `chromium`, through the DevTools
# protocol); the audit report's PDF is read back by an independent extractor (poppler's
# pdftotext).
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v pdftotext >/dev/null 2>&1 || need_apt+=(poppler-utils)

if ((${#need_apt[@]})); then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-test-deps: need root to apt-get install ${need_apt[*]}" >&2
    exit 1
  fi
  echo "install-test-deps: installing ${need_apt[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

# cargo-deny checks the dependency graph (deny.toml): bans, licenses, sources.
# Pinned, so a new release cannot change what CI checks.
CARGO_DENY_VERSION=0.20.2
if [ "$(cargo deny --version 2>/dev/null)" != "cargo-deny $CARGO_DENY_VERSION" ]; then
  echo "install-test-deps: installing cargo-deny $CARGO_DENY_VERSION (cargo install, a few minutes)" >&2
  cargo install cargo-deny --version "$CARGO_DENY_VERSION" --locked --quiet
fi

# Independent JWS verifiers for the postwarden-wire tests.
python3 -c 'import joserfc, cryptography' 2>/dev/null ||
  python3 -m pip install --quiet 'joserfc>=1.0' 'cryptography>=42'
# A real Prometheus parser reads the server's /metrics (OpenMetrics text).
python3 -c 'import prometheus_client' 2>/dev/null ||
  python3 -m pip install --quiet 'prometheus_client>=0.20'

bash "$(dirname "$0")/windows.sh" deps
