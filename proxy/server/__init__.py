"""The aiohttp side: the application and its endpoints, the connection guard, lifecycle and drain,
config reload, worker processes and the status page. The only package that touches aiohttp's
web.Request and StreamResponse."""
