"""Which pages may open cq.live's WebSockets, judged by the handshake's Origin.

A browser sends its session cookie with a WebSocket handshake made by another
site's page too: from a sibling subdomain (same-site, so even a SameSite=Lax
cookie goes), and from any site when the cookie is SameSite=None. Without this
check a page on evil.example could read a staff user's task trees and the
dashboard live (cross-site WebSocket hijacking). Only the Origin header tells
those handshakes apart, so cq's consumers check it themselves: a project whose
asgi.py leaves out channels' AllowedHostsOriginValidator is still safe.
"""

from urllib.parse import ParseResult, urlparse

from channels.security.websocket import OriginValidator
from django.conf import settings

from ..conf import settings as cq_settings

# Browsers put only these in an Origin header (a WebSocket's included).
SCHEMES = ("http", "https")


def allowed_origins() -> list[str]:
    """CQ_LIVE_ALLOWED_ORIGINS, or else the hosts Django serves (ALLOWED_HOSTS)."""
    configured = cq_settings.LIVE_ALLOWED_ORIGINS
    if configured is not None:
        return list(configured)
    hosts = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not hosts:
        # What Django itself serves then (HttpRequest.get_host): runserver on
        # a fresh project's localhost.
        hosts = [".localhost", "127.0.0.1", "[::1]"]
    return hosts


def allowed(scope) -> bool:
    """Whether the handshake in `scope` comes from an allowed page.

    channels' OriginValidator rules: a pattern with a scheme matches the
    origin's scheme, host and port ("https://shop.example.com"); one without
    matches its host as ALLOWED_HOSTS does (".example.com": the domain and its
    subdomains); "*" matches anything. A handshake without an Origin (not a
    browser's) or with an unreadable one ("null", from a sandboxed frame) is
    allowed only by "*"."""
    origin = _parsed_origin(scope)
    try:
        return OriginValidator(None, allowed_origins()).valid_origin(origin)
    except ValueError:  # a port out of range, in the origin or in a pattern
        return False


def origin_header(scope) -> str | None:
    """The handshake's Origin header, as sent (for log lines)."""
    for name, value in scope.get("headers", ()):
        if name == b"origin":
            return value.decode("latin1")
    return None


def pattern_problem(pattern) -> str:
    """Why `pattern` can never match a browser's Origin, or "" if it can."""
    if not isinstance(pattern, str) or not pattern:
        return f"{pattern!r} is not a non-empty string"
    if pattern == "*" or "://" not in pattern:
        return ""
    try:
        parsed = urlparse(pattern)
        parsed.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as exc:
        return f"{pattern!r} is not a valid origin: {exc}"
    if parsed.scheme not in SCHEMES:
        return f"{pattern!r} has the scheme {parsed.scheme!r}; a browser's Origin is http or https"
    if not parsed.hostname:
        return f"{pattern!r} names no host"
    if parsed.path not in ("", "/") or parsed.query or parsed.fragment:
        return f"{pattern!r} has a path; an Origin is only scheme://host[:port]"
    return ""


def _parsed_origin(scope) -> ParseResult | None:
    header = origin_header(scope)
    if header is None:
        return None
    try:
        return urlparse(header)
    except ValueError:  # "http://[broken"
        return urlparse("")
