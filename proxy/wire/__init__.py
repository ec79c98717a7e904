"""Upstream wire formats, one module or package each (openai, anthropic/): everything that depends
on a format lives here and nowhere else. Formats are registered in proxy/config/formats.py;
registry.py holds the WireAdapter contract and looks adapters up by format name."""
