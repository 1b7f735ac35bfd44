"""End-to-end tests: whole proxies (and replicas, Redis Cluster, faults, histories)."""
