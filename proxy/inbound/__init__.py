"""Inbound APIs, one module each: a client's request in its own API -> the chain's request, and the
chain's answer -> that API's own shape and error envelope."""
