"""The cache subsystem: key schema, entries, memory and Redis stores, fencing, bus, coalescing."""
