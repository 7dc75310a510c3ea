#!/usr/bin/env bash
# The one test command (README, CI): installs what the tests need, then runs formatting, lints
# and every test of the workspace: the end-to-end tests in a real Thunderbird, and the agent's
# Windows build against Wine's registry (Outlook).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-test-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# Dependencies: only crates.io, permissive licenses, and no OpenSSL / native-tls (deny.toml).
cargo deny --locked check bans licenses sources
# The Windows code: linted for its target; the tests of the registry, the agent core, the
# daemon and the queue run under Wine.
bash scripts/windows.sh clippy
bash scripts/windows.sh test
# Includes tests/tests/e2e_outlook_wine.rs and e2e_service_wine.rs (the running agent), which
# build postwarden-agent.exe through scripts/windows.sh build and run it in throwaway Wine
# prefixes.
cargo test --workspace --locked
bash scripts/fuzz.sh 20  # each fuzz target 20 s from its committed corpus (agent/fuzz/README.md)
