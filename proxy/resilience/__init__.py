"""Keeping upstreams within their limits: per-upstream concurrency slots (local and shared through
Redis) and the circuit breaker with Retry-After cool-downs."""
