"""The model catalog and everything that asks upstreams about themselves: discovery (model
listing), health checks, diagnosis of what went wrong, and the `check` command's probes."""
