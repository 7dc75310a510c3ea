#!/usr/bin/env bash
# The agent service's speed and footprint (docs/benchmarks.md, "The agent as a service"): the
# real postwarden-server and postwarden-agent (release builds), a fixture Thunderbird home.
#   scripts/bench-agent.sh [TRIALS [PUBLISHES [IDLE_SECONDS]]]   defaults: 1000 20 60
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p postwarden-agent -p postwarden-server
exec cargo run --release --quiet -p postwarden-e2e --example agent_bench -- "$@"
