"""Upstream wire formats, one module or package each (openai, anthropic/), registered in
formats.py: everything that depends on a format lives here and nowhere else. registry.py holds
the WireAdapter contract and looks adapters up by format name."""
