"""Side-by-side benchmarks of byok-proxy, a direct connection and LiteLLM (not tests).

Run everything with `python -m bench`; the README's Performance section has the method and the figures.
"""
