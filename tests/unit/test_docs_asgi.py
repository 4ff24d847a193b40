"""The `asgi.py` the README and the quick start give runs as pasted in a project:
Django set up before cq's consumer is imported, an "http" route and cq's channel;
the live page's routes WebSockets behind channels' origin validator."""

import re
from pathlib import Path

import pytest
from channels.routing import ChannelNameRouter, ProtocolTypeRouter
from channels.security.websocket import OriginValidator
from django.conf import settings

from cq.consumers import CQConsumer

ROOT = Path(__file__).resolve().parents[2]
# Each page's python block whose first line names the file it is.
ASGI_BLOCK = re.compile(r"```python\n(# myproject/asgi\.py\n.*?)```", re.DOTALL)


def asgi_snippets(page):
    return ASGI_BLOCK.findall((ROOT / page).read_text())


@pytest.mark.parametrize("page", ["README.md", "docs/quickstart.md"])
def test_the_asgi_snippet_runs_as_pasted(page):
    snippets = asgi_snippets(page)
    assert len(snippets) == 1, f"{page}: one ```python block starting # myproject/asgi.py"
    namespace = {"__name__": "myproject.asgi"}
    exec(compile(snippets[0], f"{page}:asgi.py", "exec"), namespace)

    application = namespace["application"]
    assert isinstance(application, ProtocolTypeRouter)
    assert set(application.application_mapping) == {"http", "channel"}
    channels = application.application_mapping["channel"]
    assert isinstance(channels, ChannelNameRouter)
    assert channels.application_mapping["cq-tasks"].consumer_class is CQConsumer


@pytest.mark.parametrize("page", ["README.md", "docs/quickstart.md"])
def test_the_asgi_snippet_sets_django_up_before_importing_cq_consumers(page):
    # Imported before get_asgi_application(), cq.consumers raises
    # AppRegistryNotReady in a fresh project.
    code = asgi_snippets(page)[0]
    assert code.index("get_asgi_application()") < code.index("import CQConsumer")


def test_the_live_pages_asgi_snippet_routes_websockets_behind_the_origin_validator():
    # cq's consumers check the origin themselves; the validator the page adds
    # guards the project's own routes in the same list.
    [snippet] = asgi_snippets("docs/live.md")
    namespace = {"__name__": "myproject.asgi"}
    exec(compile(snippet, "docs/live.md:asgi.py", "exec"), namespace)

    websocket = namespace["application"].application_mapping["websocket"]
    assert isinstance(websocket, OriginValidator)
    assert websocket.allowed_origins == settings.ALLOWED_HOSTS
