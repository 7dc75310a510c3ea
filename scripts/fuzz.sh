#!/usr/bin/env bash
# Fuzzes every target of agent/fuzz for SECONDS each (default 30), on the stable toolchain, from
# the seed corpus committed in agent/fuzz/corpus/ plus the reproducers in agent/fuzz/regressions/.
#
#   bash scripts/fuzz.sh [SECONDS]
#
# The fuzzer works on a copy of the corpus in a temporary directory, so a run leaves the clone as
# it found it; crashes go to a temporary artifacts directory that is kept and named on failure,
# with the command that replays each one. Exits non-zero on a build failure or any crash.
# Longer campaigns and their numbers: agent/fuzz/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-30}
if ! [[ $seconds =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: $0 [SECONDS per target, default 30]" >&2
    exit 2
fi

fuzz_dir=$PWD/agent/fuzz
# Its own target directory: the fuzz build (sanitizer, coverage instrumentation) shares nothing
# with the main workspace's build and must not invalidate it.
export CARGO_TARGET_DIR=$fuzz_dir/target
# cargo-fuzz passes nightly-only flags (-Zsanitizer, -Cpasses=sancov-module, ...); this lets the
# stable toolchain accept them, so CI needs no nightly.
export RUSTC_BOOTSTRAP=1
sanitizer=address

# Pinned, so a new release cannot change what CI runs.
CARGO_FUZZ_VERSION=0.13.2
if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
    echo "fuzz: installing cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

cd "$fuzz_dir"
# cargo fuzz has no --locked: check the lock file first, so a build never rewrites it.
if ! cargo metadata --locked --format-version 1 >/dev/null; then
    echo "fuzz: agent/fuzz/Cargo.lock is out of date; run \`cargo update --workspace\` in agent/fuzz and commit it" >&2
    exit 1
fi
targets=$(cargo fuzz list)
start=$SECONDS
if ! cargo fuzz build --sanitizer "$sanitizer"; then
    echo "fuzz: FAILED to build the fuzz targets" >&2
    exit 1
fi
echo "fuzz: built $(wc -w <<<"$targets") targets in $((SECONDS - start)) s (sanitizer: $sanitizer)"
bin_dir=$CARGO_TARGET_DIR/$(rustc -vV | sed -n 's/^host: //p')/release

work=$(mktemp -d -t postwarden-fuzz.XXXXXX)
artifacts=$(mktemp -d -t postwarden-fuzz-artifacts.XXXXXX)
failed=()
for target in $targets; do
    corpus=$work/corpus/$target
    mkdir -p "$corpus" "$artifacts/$target"
    cp -R "corpus/$target/." "$corpus/"
    seeds=$(find "$corpus" -type f | wc -l)
    # Only the first corpus directory receives new inputs: the temporary copy. The reproducers
    # of fixed (or tolerated) findings run at start-up from their read-only directory.
    read_only=()
    if [[ -d regressions/$target ]]; then
        read_only=("regressions/$target")
    fi
    log=$work/$target.log
    status=0
    "$bin_dir/$target" \
        -max_total_time="$seconds" \
        -timeout=20 \
        -rss_limit_mb=2048 \
        -print_final_stats=1 \
        -artifact_prefix="$artifacts/$target/" \
        "$corpus" "${read_only[@]}" >"$log" 2>&1 || status=$?

    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -n 1 || true)
    size=$(find "$corpus" -type f | wc -l)
    crashes=$(find "$artifacts/$target" -type f)
    printf 'fuzz: %-16s %s runs=%s exec/s=%s %s corpus=%s (seeds %s)\n' \
        "$target" "$([[ $status == 0 && -z $crashes ]] && echo ok || echo FAILED)" \
        "${runs:-?}" "${rate:-?}" "${cov:-cov: ?}" "$size" "$seeds"

    if [[ $status != 0 || -n $crashes ]]; then
        failed+=("$target")
        echo "fuzz: $target exited with status $status; the end of its log ($log):" >&2
        grep -v -E '^#[0-9]+\s' "$log" | tail -n 40 >&2
        for crash in $crashes; do
            echo "fuzz: reproducer: $crash" >&2
            echo "fuzz:   replay:   (cd agent/fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run $target -s $sanitizer $crash)" >&2
            echo "fuzz:   minimise: (cd agent/fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz tmin $target -s $sanitizer $crash)" >&2
        done
    fi
done

if ((${#failed[@]})); then
    echo "fuzz: FAILED: ${failed[*]} (logs in $work, crashes in $artifacts)" >&2
    exit 1
fi
rm -rf "$work" "$artifacts"
echo "fuzz: all targets ok, ${seconds} s each"
