"""HTTP fit to share: a bearer token on streamable HTTP, and Host/Origin checks for named hosts.

`resolve_token(given)` is the token a server requires: the one given (`--token`), else
`$DIFFSCOPE_TOKEN`, else a fresh random one (printed on stderr at start, so the person who
started the server can hand it to a client). `BearerGate` wraps the streamable HTTP app: every
request without `Authorization: Bearer TOKEN` is refused with 401 and the `WWW-Authenticate`
header the MCP authorization spec asks for (`Bearer` with `resource_metadata` pointing at the
OAuth protected-resource metadata, RFC 9728, which the gate serves without a token). The token
is static, so the metadata names no authorization server: a client is configured with the token
(e.g. `mcp-remote URL --header "Authorization: Bearer TOKEN"`).

`security_settings(host, port, allowed_hosts)` keeps the SDK's DNS-rebinding protection on every
bind: on loopback for 127.0.0.1 / localhost / [::1]; elsewhere for the hosts named with
`--allowed-host` (default: the `--host` itself, which must then be a real address, not 0.0.0.0).
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
from collections.abc import Mapping, Sequence

from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp, Receive, Scope, Send

TOKEN_ENV = "DIFFSCOPE_TOKEN"
METADATA_PATH = "/.well-known/oauth-protected-resource"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
WILDCARD = ("0.0.0.0", "::", "")


def resolve_token(given: str | None = None) -> tuple[str, bool]:
    """The token to require and whether it was generated here (True: print it for the user)."""
    token = given or os.environ.get(TOKEN_ENV, "").strip()
    if token:
        if len(token) < 16:
            raise ValueError(
                f"the bearer token must be at least 16 characters (got {len(token)}); "
                f"set a longer {TOKEN_ENV} or leave it unset to have one generated"
            )
        return token, False
    return secrets.token_urlsafe(32), True


def is_loopback(host: str) -> bool:
    return host in LOOPBACK


def security_settings(
    host: str, port: int, allowed_hosts: Sequence[str] = ()
) -> TransportSecuritySettings:
    """Host/Origin allow lists for a bind; ValueError when a wildcard bind names no host."""
    if is_loopback(host) and not allowed_hosts:
        names: list[str] = list(LOOPBACK)
    else:
        names = list(allowed_hosts) or ([] if host in WILDCARD else [host])
        if not names:
            raise ValueError(
                f"--host {host or repr(host)} listens on every address; name the host clients "
                "use with --allowed-host NAME (repeat it for several), so Host and Origin "
                "headers can still be checked"
            )
    hosts: list[str] = []
    origins: list[str] = []
    for name in names:
        bare = f"[{name}]" if ":" in name and not name.startswith("[") else name
        port_part = "*" if is_loopback(name) else str(port)  # loopback: any local port
        hosts.append(f"{bare}:{port_part}")
        if not is_loopback(name) and port in (80, 443):
            hosts.append(bare)  # a client may leave the default port out
        origins += [f"http://{bare}:{port_part}", f"https://{bare}:{port_part}"]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=sorted(set(hosts)),
        allowed_origins=sorted(set(origins)),
    )


def check_bind(
    host: str, port: int, allowed_hosts: Sequence[str] = (), *, no_token: bool = False
) -> TransportSecuritySettings:
    """The Host/Origin settings for a bind; ValueError saying what to do for an unsafe one
    (no token off loopback, a wildcard address naming no host)."""
    if no_token and not is_loopback(host):
        raise ValueError(
            f"--host {host} is not loopback: serving there needs a bearer token (drop "
            f"--no-token; set ${TOKEN_ENV} or let one be generated and printed at start)"
        )
    return security_settings(host, port, allowed_hosts)


class BearerGate:
    """ASGI middleware: only requests bearing the token reach the app (see the module doc)."""

    def __init__(self, app: ASGIApp, token: str, *, resource: str | None = None) -> None:
        if not token:
            raise ValueError("BearerGate needs a non-empty token")
        self.app = app
        self._token = token.encode()
        self.resource = resource

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan events pass through
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        if path == METADATA_PATH or path.startswith(METADATA_PATH + "/"):
            await self._metadata(scope, send)
            return
        given = self._bearer(scope)
        if given is not None and hmac.compare_digest(given.encode(), self._token):
            await self.app(scope, receive, send)
            return
        await self._refuse(scope, send, wrong=given is not None)

    @staticmethod
    def _bearer(scope: Scope) -> str | None:
        for key, value in scope.get("headers", []):
            if key.lower() == b"authorization":
                text = value.decode("latin-1")
                if text[:7].lower() == "bearer ":
                    return text[7:].strip()
        return None

    def _base(self, scope: Scope) -> str:
        if self.resource is not None:
            return self.resource.rstrip("/")
        host = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"host"), "")
        return f"{scope.get('scheme', 'http')}://{host}"

    async def _refuse(self, scope: Scope, send: Send, *, wrong: bool) -> None:
        metadata = self._base(scope) + METADATA_PATH
        challenge = f'Bearer realm="diffscope", resource_metadata="{metadata}"'
        if wrong:
            challenge += ', error="invalid_token", error_description="the bearer token is wrong"'
        body = {
            "error": "invalid_token" if wrong else "unauthorized",
            "error_description": "this diffscope server needs 'Authorization: Bearer TOKEN'; "
            f"the token was printed when the server started (or is ${TOKEN_ENV})",
        }
        await _send_json(send, 401, body, [(b"www-authenticate", challenge.encode())])

    async def _metadata(self, scope: Scope, send: Send) -> None:
        base = self._base(scope)
        body = {
            "resource": base + "/mcp",
            "authorization_servers": [],
            "bearer_methods_supported": ["header"],
            "resource_name": "diffscope",
            "resource_documentation": "a static bearer token, printed when the server starts "
            f"or taken from ${TOKEN_ENV}",
        }
        await _send_json(send, 200, body, [])


async def _send_json(
    send: Send, status: int, body: Mapping[str, object], headers: list[tuple[bytes, bytes]]
) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})
