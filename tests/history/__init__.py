"""A Jepsen-style history checker: real processes, seeded faults, every answer judged."""
