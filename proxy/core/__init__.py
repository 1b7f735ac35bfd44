"""The read-through core: the order service, caching policy, waits, models and errors."""
