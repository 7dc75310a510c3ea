//! The agent's durable outbox (being written: see the issue 10 brief).
