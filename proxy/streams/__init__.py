"""Streams on their way back: SSE parsing and encoding, and the commit guard that holds a stream's
preamble until it has really begun."""
