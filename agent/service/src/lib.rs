//! The agent as a system service (being written: see the issue 10 brief).
