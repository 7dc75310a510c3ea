#!/usr/bin/env bash
# Builds Postwarden for Windows and runs its Windows code under Wine, on Debian 12.
#
#   scripts/windows.sh deps              install what the rest needs (apt; root)
#   scripts/windows.sh prefix            create the base Wine prefix target/wine/base once
#   scripts/windows.sh prefix-clone DIR  make DIR a fresh throwaway copy of the base prefix
#   scripts/windows.sh test [ARGS...]    cross-compile the tests of postwarden-registry,
#                                        -agent-core, -daemon and -queue, run them under Wine
#                                        (ARGS go to cargo test; `-- --nocapture` works)
#   scripts/windows.sh build             build postwarden-agent.exe (debug); prints its path last
#   scripts/windows.sh bench [ROUNDS [KEYS [VALUES]]]  watcher latency (examples/watch_latency)
#   scripts/windows.sh bench-check [ROUNDS]  Outlook check of the baseline, 10 accounts
#                                        (agent/core/examples/outlook_check)
#   scripts/windows.sh bench-service [TRIALS]  drift -> repaired and re-verified by the running
#                                        agent (`postwarden-agent.exe run`, release), default
#                                        1000 trials (agent/daemon/examples/service_latency)
#   scripts/windows.sh clippy            clippy -D warnings on the registry crate, the agent core,
#                                        the agent and its service-side crates for Windows (Linux
#                                        clippy never sees cfg(windows) code)
#   scripts/windows.sh env               print the environment the others use, for `eval`
#
# The toolchain is Debian's rustc-web 1.96 with the std sources (rust-web-src) and -Zbuild-std:
# rustup's 1.95 has no Windows std here, and a std must match its compiler exactly. Debian's
# rustc/cargo are called by full path, so rustup's toolchain stays the default for everything
# else, and they build into target/windows, so they never invalidate rustup's builds in target/.
# Wine 8.0 lacks bcryptprimitives.dll, which Rust's std imports; tests/wine/bcryptprimitives is
# a shim that the prefix gets.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=x86_64-pc-windows-gnu
WIN_TARGET_DIR=$ROOT/target/windows
WINE_DIR=$ROOT/target/wine
BASE=$WINE_DIR/base
SHIM_SRC=$ROOT/tests/wine/bcryptprimitives
LINKER=x86_64-w64-mingw32-gcc-win32
PACKAGES=(wine wine64 gcc-mingw-w64-x86-64-win32 rustc-web cargo-web rust-web-src rust-web-clippy)

say() { echo "windows.sh: $*" >&2; }
die() {
  say "$*"
  exit 1
}

installed() { [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]; }

missing_packages() {
  local p
  for p in "${PACKAGES[@]}"; do installed "$p" || echo "$p"; done
}

# The Debian toolchain must be new enough for our dependencies (windows-registry 0.100 needs
# Rust 1.95) and its std sources must be the same version as the compiler.
check_toolchain() {
  local rustc_version src_version
  rustc_version=$(dpkg-query -W -f='${Version}' rustc-web)
  src_version=$(dpkg-query -W -f='${Version}' rust-web-src)
  [ "$rustc_version" = "$src_version" ] ||
    die "rustc-web $rustc_version and rust-web-src $src_version differ; -Zbuild-std needs the same version (apt-get install rustc-web rust-web-src)"
  local minor
  minor=$(/usr/bin/rustc --version | sed -E 's/^rustc 1\.([0-9]+).*/\1/')
  [ "$minor" -ge 95 ] ||
    die "$(/usr/bin/rustc --version) is too old (need 1.95+, from bookworm-security: is it in your apt sources?)"
}

cmd_deps() {
  local need
  mapfile -t need < <(missing_packages)
  if ((${#need[@]})); then
    [ "$(id -u)" -eq 0 ] || die "need root to apt-get install ${need[*]} (run: sudo bash scripts/windows.sh deps)"
    say "installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
  fi
  check_toolchain
}

require_deps() {
  local need
  mapfile -t need < <(missing_packages)
  ((${#need[@]} == 0)) || die "missing Debian packages: ${need[*]} (run: sudo bash scripts/windows.sh deps)"
  check_toolchain
}

# Wine, headless and quiet: no Mono/Gecko installers (mscoree, mshtml), and no winedbg, which
# would otherwise catch a crashing test and make wine exit 0.
export WINEDEBUG=-all
export WINEDLLOVERRIDES="mscoree,mshtml=;winedbg.exe=d"
export WINEARCH=win64

wine_version() { wine --version 2>/dev/null; }

# The base prefix is made once (about 7 s, 700 MB) and never used directly: every run works
# in a clone. It is rebuilt when Wine or the shim source changes.
cmd_prefix() {
  require_deps
  mkdir -p "$WINE_DIR"
  # One creator at a time; the others wait and then find it made.
  exec 9>"$WINE_DIR/.lock"
  flock 9
  local stamp=$BASE/.postwarden-stamp want
  want="$(wine_version) $(cat "$SHIM_SRC"/bcryptprimitives.c "$SHIM_SRC"/bcryptprimitives.def | sha256sum | cut -c1-16)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    flock -u 9
    return 0
  fi
  say "creating the base Wine prefix $BASE"
  rm -rf "$BASE" "$BASE.tmp"
  mkdir -p "$WINE_DIR"
  (
    export WINEPREFIX=$BASE.tmp
    # wineboot warns about the missing 32-bit half (no wine32), harmlessly.
    wine wineboot --init >/dev/null 2>&1
    wineserver -w
    # Wine 8.0 has no bcryptprimitives.dll; Rust's std imports ProcessPrng from it.
    "$LINKER" -O2 -shared -s -o "$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll" \
      "$SHIM_SRC/bcryptprimitives.c" "$SHIM_SRC/bcryptprimitives.def" -ladvapi32
  )
  [ -f "$BASE.tmp/system.reg" ] || die "wineboot did not create $BASE.tmp"
  echo "$want" >"$BASE.tmp/.postwarden-stamp"
  mv "$BASE.tmp" "$BASE"
  flock -u 9
}

# A throwaway prefix in 0.01 s instead of 0.7 s for a full copy: drive_c's files are hard
# links to the base's, and everything Wine rewrites while it runs is copied. Wine writes the
# registry (*.reg) to a new file and renames it over the old one, and adds new files under
# drive_c, neither of which touches the base; but a prefix *update* (wineboot --update, which
# Wine starts by itself when .update-timestamp does not match its wine.inf) rewrites the fake
# DLLs in place, through the links, into the base. So the clone's .update-timestamp says
# "disable"; the base is rebuilt when Wine changes instead (cmd_prefix's stamp).
clone_prefix() {
  local dir=$1
  [ -f "$BASE/.postwarden-stamp" ] || die "no base prefix (run: bash scripts/windows.sh prefix)"
  if [ -e "$dir" ]; then
    WINEPREFIX=$dir wineserver -k 2>/dev/null || true
    rm -rf "$dir"
  fi
  mkdir -p "$dir"
  if ! cp -a --link "$BASE/drive_c" "$dir/" 2>/dev/null; then
    # Hard links need the same file system; elsewhere, copy (about 0.7 s, 700 MB).
    rm -rf "$dir/drive_c"
    cp -a "$BASE/drive_c" "$dir/"
  fi
  cp -a "$BASE/dosdevices" "$BASE"/*.reg "$dir/"
  echo disable >"$dir/.update-timestamp"
}

cmd_prefix_clone() {
  [ $# -eq 1 ] || die "usage: scripts/windows.sh prefix-clone DIR"
  cmd_prefix
  clone_prefix "$1"
  echo "$(cd "$1" && pwd)"
}

# Debian's toolchain and the cross-compilation settings, for cargo called as $CARGO.
CARGO=/usr/bin/cargo
set_build_env() {
  # A test that builds the agent through this script (tests/src/wine.rs) inherits from cargo
  # the variables it sets for the programs it runs: CARGO_PKG_NAME, CARGO_MANIFEST_DIR, ... Some
  # build scripts watch them (ring's), so every such build would rerun them and rebuild all
  # above (about 45 s). They describe the caller's package, not ours: drop them.
  local v
  for v in $(compgen -e); do
    case $v in
    CARGO_PKG_* | CARGO_MANIFEST_* | CARGO_CRATE_NAME | CARGO_BIN_NAME | CARGO_BIN_EXE_* | \
      CARGO_PRIMARY_PACKAGE | CARGO_TARGET_TMPDIR | CARGO_RUSTC_CURRENT_DIR) unset "$v" ;;
    esac
  done
  export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc
  # -Zbuild-std is unstable; Debian's stable compiler accepts it only with this.
  export RUSTC_BOOTSTRAP=1
  export CARGO_TARGET_DIR=$WIN_TARGET_DIR
  export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=$LINKER
  export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=wine
  export RUST_BACKTRACE=${RUST_BACKTRACE:-1}
}

# --locked applies to our Cargo.lock; -Zbuild-std resolves std's own dependencies from the
# Cargo.lock that ships with the std sources (/usr/lib/rustlib/src/rust/library/Cargo.lock),
# so it does not need them in ours.
BUILD_ARGS=(-Zbuild-std --target "$TARGET" --locked)

# Runs "$@" with WINEPREFIX set to a fresh clone, then stops its wineserver and removes it.
with_throwaway_prefix() {
  local prefix old
  # Left behind by runs that were killed.
  for old in "$WINE_DIR"/run-*; do
    [ -d "$old" ] || continue
    kill -0 "${old##*/run-}" 2>/dev/null && continue
    WINEPREFIX=$old wineserver -k 2>/dev/null || true
    rm -rf "$old"
  done
  prefix=$WINE_DIR/run-$$
  clone_prefix "$prefix"
  # shellcheck disable=SC2064
  trap "WINEPREFIX='$prefix' wineserver -k 2>/dev/null || true; rm -rf '$prefix'" EXIT
  WINEPREFIX=$prefix "$@"
}

cmd_test() {
  cmd_prefix
  set_build_env
  cd "$ROOT"
  # --tests: doctests cannot run with -Zbuild-std (rustdoc would use the host's sysroot).
  # The registry crate (real registry, watcher) and the agent core (journal, state lock, atomic
  # writes and sessions with three clients, on Windows' file semantics as Wine gives them); the
  # daemon (users, state), the queue (SQLite, its kill tests with TerminateProcess) and the
  # service (installed, started, queried, stopped and removed through Wine's service manager).
  with_throwaway_prefix "$CARGO" test "${BUILD_ARGS[@]}" -p postwarden-registry \
    -p postwarden-agent-core -p postwarden-daemon -p postwarden-queue -p postwarden-service \
    --tests "$@"
}

cmd_build() {
  require_deps
  set_build_env
  cd "$ROOT"
  "$CARGO" build "${BUILD_ARGS[@]}" -p postwarden-agent --bin postwarden-agent >&2
  local exe=$WIN_TARGET_DIR/$TARGET/debug/postwarden-agent.exe
  [ -f "$exe" ] || die "cargo did not produce $exe"
  echo "$exe"
}

cmd_bench() {
  cmd_prefix
  set_build_env
  cd "$ROOT"
  with_throwaway_prefix "$CARGO" run "${BUILD_ARGS[@]}" --release -p postwarden-registry \
    --example watch_latency -- "$@"
}

cmd_bench_check() {
  cmd_prefix
  set_build_env
  cd "$ROOT"
  with_throwaway_prefix "$CARGO" run "${BUILD_ARGS[@]}" --release -p postwarden-agent-core \
    --example outlook_check -- "$@"
}

# The running agent against drift written by another process, in a throwaway prefix: both
# programs in release, the agent started by the example (which passes it a Windows path; Z: is
# the Unix root in every Wine prefix).
cmd_bench_service() {
  cmd_prefix
  set_build_env
  cd "$ROOT"
  "$CARGO" build "${BUILD_ARGS[@]}" --release -p postwarden-agent --bin postwarden-agent >&2
  "$CARGO" build "${BUILD_ARGS[@]}" --release -p postwarden-daemon --example service_latency >&2
  local out=$WIN_TARGET_DIR/$TARGET/release
  with_throwaway_prefix wine "$out/examples/service_latency.exe" --throwaway-registry \
    "Z:${out//\//\\}\\postwarden-agent.exe" "$@"
}

cmd_clippy() {
  require_deps
  set_build_env
  cd "$ROOT"
  # Debian's cargo-clippy, told to drive Debian's cargo: the plain `cargo clippy` would find
  # rustup's cargo-clippy first on PATH. The agent's tests and benches are Linux-side (they
  # drive Thunderbird and Wine), so only its libraries, binary and examples are linted here.
  CARGO=$CARGO /usr/bin/cargo-clippy clippy "${BUILD_ARGS[@]}" -p postwarden-registry \
    --all-targets "$@" -- -D warnings
  CARGO=$CARGO /usr/bin/cargo-clippy clippy "${BUILD_ARGS[@]}" -p postwarden-agent-core \
    --lib --examples "$@" -- -D warnings
  CARGO=$CARGO /usr/bin/cargo-clippy clippy "${BUILD_ARGS[@]}" -p postwarden-agent \
    --bins "$@" -- -D warnings
  # The long-running agent's crates: the daemon (with the registry watcher and the latency
  # example), the queue (SQLite), desktop notices and the service manager's side.
  CARGO=$CARGO /usr/bin/cargo-clippy clippy "${BUILD_ARGS[@]}" -p postwarden-daemon \
    -p postwarden-queue -p postwarden-desktop -p postwarden-service --lib --examples "$@" \
    -- -D warnings
}

cmd_env() {
  set_build_env
  local v
  for v in RUSTC RUSTDOC RUSTC_BOOTSTRAP CARGO_TARGET_DIR CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER \
    CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER RUST_BACKTRACE WINEDEBUG WINEDLLOVERRIDES WINEARCH; do
    printf 'export %s=%q\n' "$v" "${!v}"
  done
}

usage() {
  sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

[ $# -ge 1 ] || usage
sub=$1
shift
case $sub in
deps) cmd_deps "$@" ;;
prefix) cmd_prefix "$@" ;;
prefix-clone) cmd_prefix_clone "$@" ;;
test) cmd_test "$@" ;;
build) cmd_build "$@" ;;
bench) cmd_bench "$@" ;;
bench-check) cmd_bench_check "$@" ;;
bench-service) cmd_bench_service "$@" ;;
clippy) cmd_clippy "$@" ;;
env) cmd_env "$@" ;;
*) usage ;;
esac
