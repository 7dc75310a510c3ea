//! The agent's long-running side (being written: see the issue 10 brief).
