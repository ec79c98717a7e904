"""A translated stream is over when its last event is sent. Agents such as Codex CLI close
the connection as soon as they read `response.completed` (or `message_stop`); that answer
was delivered, so metrics and the access log record its status, not 499."""
import aiohttp
import pytest

pytestmark = pytest.mark.timeout(60)

CONFIG = """
upstreams:
  demo: {format: mock}
models:
  main: [demo/echo-1]
"""


async def _read_until_then_hang_up(url: str, body: dict, headers: dict, last_event: bytes) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(url, json=body, headers=headers) as answer:
            assert answer.status == 200
            async for line in answer.content:
                if line.startswith(b"event: " + last_event):
                    break
            else:
                raise AssertionError(f"no {last_event!r} event")
        # leaving the block releases the connection before the body's end: the client hung up


async def _requests_total(base_url: str, api: str) -> str:
    async with aiohttp.ClientSession() as session:
        async with session.get(base_url.removesuffix("/v1") + "/metrics") as answer:
            return "\n".join(line for line in (await answer.text()).splitlines()
                             if line.startswith(f'byok_requests_total{{api="{api}"'))


@pytest.mark.parametrize("api,path,body,last_event", [
    ("responses", "responses", {"model": "main", "input": "hello", "stream": True}, b"response.completed"),
    ("messages", "messages", {"model": "main", "max_tokens": 32, "stream": True,
                              "messages": [{"role": "user", "content": "hello"}]}, b"message_stop"),
])
async def test_a_client_that_hangs_up_after_the_last_event_got_a_200(proxy_factory, api, path, body, last_event):
    proxy = await proxy_factory(CONFIG)
    await _read_until_then_hang_up(f"{proxy.base_url}/{path}", body, {"anthropic-version": "2023-06-01"}, last_event)
    assert _line(api, "200") in await _requests_total(proxy.base_url, api)


def _line(api: str, status: str) -> str:
    return f'byok_requests_total{{api="{api}",model="echo-1",status="{status}",upstream="demo"}} 1.0'
