#!/usr/bin/env bash
# The one test command (README, CI): installs what the tests need, then runs formatting, lints
# and every test of the workspace, including the end-to-end tests in a real Thunderbird.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-test-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
