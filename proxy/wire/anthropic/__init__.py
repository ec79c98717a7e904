"""The Anthropic Messages wire format: request encoding (request.py, messages.py), answers and
errors (response.py), stream translation (stream.py); adapter.py ties them into one WireAdapter."""
