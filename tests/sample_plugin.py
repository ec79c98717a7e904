"""A user plugin of the same shape as the built-ins, loaded by dotted path in tests."""


class TagRequests:
    def __init__(self, context):
        self.tag = context.options.get("tag", "none")

    async def __call__(self, request, call_next):
        body = dict(request.body or {})
        body["plugin_tag"] = self.tag
        response = await call_next(request.replace(body=body))
        response.headers["x-plugin-tag"] = self.tag
        return response


class FailsInside:
    """A plugin with a bug: every request it sees raises an exception no middleware expects."""

    def __init__(self, context):
        pass

    async def __call__(self, request, call_next):
        raise RuntimeError("a bug in a plugin")
