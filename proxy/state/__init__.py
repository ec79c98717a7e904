"""Stored responses: the bytes of each stored Response record, kept in memory or in Redis.

A store knows nothing of the Responses API: it keeps opaque records by id for a TTL. What a
record holds, and how it is read back, is proxy/inbound/responses/stored.py's.
"""
