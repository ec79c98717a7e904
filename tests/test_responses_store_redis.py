"""Stored responses in Redis, through a real redis-server: two proxy processes share one store, so a
conversation begun on one continues on the other; Redis down is a prompt 503 for what needs it,
and `store: false` keeps working."""
from __future__ import annotations

import os
import time
import uuid

import openai
import pytest

from tests.conftest import RESPONSES_KEY, client_for
from tests.helpers import free_port, spawn_proxy, wait_for_port
from tests.test_redis_limiter import REDIS_SERVER, redis_url  # noqa: F401 (fixture)
from tests.upstreams.anthropic_upstream import DEFAULT_KEY as ANTHROPIC_KEY

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(not os.path.exists(REDIS_SERVER), reason="redis-server is not installed (CI installs it)"),
]


def config_text(openai_upstream, anthropic_upstream, url: str) -> str:
    return f"""
upstreams:
  chat: {{base_url: "{openai_upstream.url}/v1", api_key: sk-upstream, discover_models: false}}
  claude: {{base_url: "{anthropic_upstream.base_url}", format: anthropic, api_key: {ANTHROPIC_KEY},
           discover_models: false}}
models:
  gpt: [chat/gpt-test]
  sonnet: [claude/claude-sonnet-4-6]
responses:
  store: {{backend: redis, url: "{url}", ttl: 60, key_prefix: "t{uuid.uuid4().hex[:8]}"}}
health: {{enabled: false}}
"""


class Replica:
    def __init__(self, config_path: str):
        self.port = free_port()
        self.process = spawn_proxy(config_path, self.port)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(15)


@pytest.fixture
def replicas(tmp_path, openai_upstream, anthropic_upstream, redis_url):  # noqa: F811
    path = tmp_path / "config.yaml"
    path.write_text(config_text(openai_upstream, anthropic_upstream, redis_url))
    started = [Replica(str(path)), Replica(str(path))]
    try:
        for replica in started:
            wait_for_port(replica.port, process=replica.process)
        yield started
    finally:
        for replica in started:
            replica.stop()


@pytest.mark.parametrize("alias", ["gpt", "sonnet"])
async def test_a_conversation_continues_on_another_replica(replicas, alias, openai_upstream, anthropic_upstream):
    one, two = (client_for(replica) for replica in replicas)
    first = await one.responses.create(model=alias, input="my name is Ada")
    async with two.responses.stream(model=alias, input="what is my name?", previous_response_id=first.id) as stream:
        second = await stream.get_final_response()
    third = await one.responses.create(model=alias, input="once more", previous_response_id=second.id)
    assert third.previous_response_id == second.id
    if alias == "gpt":
        sent = openai_upstream.requests[-1].json["messages"]
    else:
        sent = anthropic_upstream.requests[-1].body["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user", "assistant", "user"]

    items = [item async for item in two.responses.input_items.list(third.id, order="asc")]
    assert [item.role for item in items] == ["user", "assistant", "user", "assistant", "user"]
    assert (await two.responses.retrieve(third.id)).output_text == third.output_text
    await two.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        await one.responses.retrieve(first.id)


async def test_redis_down_is_a_prompt_503_and_store_false_still_works(openai_upstream, proxy_factory):
    dead = f"redis://127.0.0.1:{free_port()}/0"
    client = client_for(await proxy_factory(f"""
    upstreams:
      chat: {{base_url: "{openai_upstream.url}/v1", api_key: sk-upstream, discover_models: false}}
    models:
      main: [chat/gpt-test]
    responses:
      store: {{backend: redis, url: "{dead}"}}
    """))
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as caught:
        await client.responses.create(model="main", input="hi", previous_response_id="resp_byok_0123")
    assert caught.value.status_code == 503 and caught.value.body["code"] == "store_unavailable"
    with pytest.raises(openai.APIStatusError) as caught:
        await client.responses.retrieve("resp_byok_0123")
    assert caught.value.status_code == 503
    with pytest.raises(openai.APIStatusError) as caught:
        await client.responses.create(model="main", input="keep this")
    assert caught.value.status_code == 503, "the store is known to be down: a stored create is refused at once"
    assert time.monotonic() - started < 5
    response = await client.responses.create(model="main", input="hi", store=False)
    assert response.output_text == "hello from upstream"


async def test_redis_down_still_serves_a_responses_upstream_which_keeps_its_own_answers(responses_upstream,
                                                                                         proxy_factory):
    # Only a translated answer goes to the proxy's store: a passed-through one is the upstream's to keep.
    dead = f"redis://127.0.0.1:{free_port()}/0"
    client = client_for(await proxy_factory(f"""
    upstreams:
      oai: {{base_url: "{responses_upstream.url}/v1", format: responses, api_key: {RESPONSES_KEY},
             discover_models: false}}
    models:
      main: [oai/gpt-test]
    responses:
      store: {{backend: redis, url: "{dead}"}}
    """))
    with pytest.raises(openai.APIStatusError) as caught:  # a stored conversation: only the proxy has it
        await client.responses.create(model="main", input="hi", previous_response_id="resp_byok_0123")
    assert caught.value.status_code == 503
    response = await client.responses.create(model="main", input="keep this")  # the store is known to be down
    assert response.status == "completed"
    assert responses_upstream.last.json["input"] == "keep this"  # passed through, store flag and all
