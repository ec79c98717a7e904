"""Side-by-side benchmarks of byok-proxy, a direct connection and LiteLLM (not tests).

Run everything with `python -m bench`; see docs/bench.md.
"""
