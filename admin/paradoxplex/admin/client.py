"""An async client of the admin HTTP API, one method per route.

Rules:
- An error answer raises ``AdminAPIError(status, code, message)``; a node that cannot be
  reached (refused, reset, timed out) raises ``AdminUnreachable(url, reason)``. Nothing else
  from aiohttp escapes.
- ``timeout`` (default 10 s) bounds each request as a whole.
- ``https://`` URLs: the server's certificate is checked against ``ca`` (a PEM file), else
  the system's CAs; ``verify=False`` skips the check (health probes only: they send no token).
  A CA file that cannot be loaded raises ``ConfigError("--ca", ...)``.
- Payloads: a ``str`` is sent as ``{"text": ...}``, ``bytes`` as ``{"base64": ...}``.
- Every action (send, pause, resume, labels, close, broadcast, upstream add, drain and remove,
  node drain) carries an ``Idempotency-Key`` (``key=``, else a fresh one per call) and is
  tried again with the same key while it is answered 503, 504 or 409 ``in_progress``, under
  ``retry`` (default ``retry.ADMIN_ACTION``: 6 attempts in about 6 s): the fleet acts once
  whatever the number of tries. The last error says its ``outcome`` and ``key``.
- Use as ``async with AdminClient(url) as client:``, or call ``aclose()``.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import ssl
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aiohttp
import orjson
from yarl import URL

from paradoxplex.shared.errors import ConfigError
from paradoxplex.shared.idempotency import HEADER
from paradoxplex.shared.retry import ADMIN_ACTION, Backoff, RetryPolicy

DEFAULT_TIMEOUT = 10.0
Record = dict[str, Any]


#: Answers after which an action is tried again with its key (409 only when in_progress).
RETRIED = frozenset({503, 504})


class AdminAPIError(Exception):
    """The API answered with an error: HTTP status, error code and message; for a 503 or 504,
    ``outcome`` (``not_applied`` or ``unknown``); ``key``: the action's Idempotency-Key."""

    def __init__(self, status: int, code: str, message: str, *, outcome: str | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.outcome = outcome
        self.key: str | None = None

    @property
    def retryable(self) -> bool:
        """Whether trying the action again with its key may succeed."""
        return self.status in RETRIED or self.code == "in_progress"


class AdminUnreachable(Exception):
    """No answer from the API: connection refused or reset, DNS failure, timeout."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach the admin API at {url}: {reason}")
        self.url = url
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a list; ``cursor`` is None on the last page."""

    items: list[Record]
    cursor: str | None

    def to_dict(self) -> Record:
        return {"items": self.items, "cursor": self.cursor}


def payload_body(payload: str | bytes) -> Record:
    """``{"text": ...}`` for text, ``{"base64": ...}`` for bytes."""
    if isinstance(payload, str):
        return {"text": payload}
    return {"base64": base64.b64encode(payload).decode("ascii")}


def error_from_answer(status: int, reason: str, body: bytes) -> AdminAPIError:
    """The error in an answer's body, or ``http_<status>`` when it has not the API's shape."""
    try:
        error = orjson.loads(body)["error"]
        outcome = error.get("outcome")
        return AdminAPIError(
            status,
            str(error["code"]),
            str(error["message"]),
            outcome=None if outcome is None else str(outcome),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        return AdminAPIError(status, f"http_{status}", reason or "error")


def _reason(error: Exception) -> str:
    """A few words for why the API could not be reached."""
    if isinstance(error, aiohttp.ClientSSLError | aiohttp.ServerFingerprintMismatch):
        return "TLS handshake failed (does the admin API serve plain http://?)"
    if isinstance(error, aiohttp.ClientConnectorError):
        if isinstance(error.os_error, socket.gaierror):
            return f"host name {error.host!r} not found"
        if error.os_error.errno:
            return os.strerror(error.os_error.errno).lower()
    if isinstance(error, TimeoutError):
        return "timed out"
    return str(error) or type(error).__name__


def client_tls(ca: str | None, *, verify: bool = True) -> ssl.SSLContext | bool:
    """What the client checks an ``https://`` server's certificate against (see the rules)."""
    if not verify:
        return False
    if ca is None:
        return True
    try:
        return ssl.create_default_context(cafile=ca)
    except (OSError, ssl.SSLError) as error:
        reason = getattr(error, "strerror", None) or getattr(error, "reason", None) or error
        raise ConfigError("--ca", f"cannot load {ca}: {reason}") from None


class AdminClient:
    """One node's admin API; any node answers for the whole fleet."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        *,
        ca: str | None = None,
        verify: bool = True,
        retry: RetryPolicy = ADMIN_ACTION,
    ) -> None:
        self.base_url = URL(base_url)
        self.retry = retry
        self.retried = 0  # actions tried again, in all
        if not self.base_url.absolute:
            raise ValueError(f"admin URL must be absolute (http://HOST:PORT), got {base_url!r}")
        self.timeout = timeout
        self._ssl = client_tls(ca, verify=verify)
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        state = "open" if self._session is not None else "idle"
        return f"<AdminClient {self.base_url} {state} token={'set' if self._headers else 'none'}>"

    async def __aenter__(self) -> AdminClient:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def _url(self, *parts: str) -> URL:
        url = self.base_url
        for part in parts:
            url = url / part
        return url

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                connector=aiohttp.TCPConnector(ssl=self._ssl),
            )
        return self._session

    async def exchange(
        self,
        method: str,
        url: URL,
        *,
        body: Any = None,
        query: Mapping[str, str] | None = None,
        key: str | None = None,
    ) -> tuple[int, str, bytes]:
        """(status, reason, raw body) of one request; raises ``AdminUnreachable``."""
        data = None if body is None else orjson.dumps(body)
        headers = {} if body is None else {"Content-Type": "application/json"}
        if key is not None:
            headers[HEADER] = key
        try:
            async with self._client().request(
                method, url, data=data, params=query, headers=headers
            ) as answer:
                return answer.status, answer.reason or "", await answer.read()
        except (aiohttp.ClientConnectionError, TimeoutError) as error:
            raise AdminUnreachable(str(self.base_url), _reason(error)) from None

    async def request(
        self,
        method: str,
        *parts: str,
        body: Any = None,
        query: Mapping[str, str] | None = None,
        ok: tuple[int, ...] = (200, 201, 204),
        key: str | None = None,
    ) -> tuple[int, Any]:
        """(status, decoded JSON or None) for a status in ``ok``; raises otherwise."""
        url = self._url(*parts)
        status, reason, raw = await self.exchange(method, url, body=body, query=query, key=key)
        if status not in ok:
            raise error_from_answer(status, reason, raw)
        if not raw or status == 204:
            return status, None
        try:
            return status, orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise AdminAPIError(status, "bad_answer", "the answer is not JSON") from None

    async def act(self, method: str, *parts: str, body: Any = None, key: str | None = None) -> Any:
        """An action: its JSON answer (None without a body), with an ``Idempotency-Key``
        (``key``, else a fresh one), tried again with it while the answer says to (rules)."""
        key = key or uuid.uuid4().hex
        backoff = Backoff(self.retry)
        while True:
            try:
                return (await self.request(method, *parts, body=body, key=key))[1]
            except AdminAPIError as error:
                error.key = key
                wait = backoff.failed()
                if not error.retryable or backoff.exhausted:
                    raise
            self.retried += 1
            await asyncio.sleep(wait)

    async def _get(self, *parts: str, query: Mapping[str, str] | None = None) -> Any:
        return (await self.request("GET", *parts, query=query))[1]

    async def _post(self, *parts: str, body: Any = None, key: str | None = None) -> Any:
        return await self.act("POST", *parts, body=body, key=key)

    async def list_nodes(self) -> list[Record]:
        """``GET /v1/nodes``: the live nodes."""
        return list((await self._get("v1", "nodes"))["items"])

    async def drain_node(self, node_id: str, *, key: str | None = None) -> Record:
        """``POST /v1/nodes/{id}/drain``: the node stops accepting and drains."""
        return dict(await self._post("v1", "nodes", node_id, "drain", key=key))

    async def list_sockets(
        self,
        *,
        node: str | None = None,
        state: str | None = None,
        label: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page:
        """``GET /v1/sockets``: one page (server default 100, at most 1000)."""
        given = {"node": node, "state": state, "label": label, "cursor": cursor}
        query = {key: value for key, value in given.items() if value is not None}
        if limit is not None:
            query["limit"] = str(limit)
        answer = await self._get("v1", "sockets", query=query)
        return Page(list(answer["items"]), answer["cursor"])

    async def iter_sockets(
        self,
        *,
        node: str | None = None,
        state: str | None = None,
        label: str | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[Record]:
        """Every socket, following cursors page by page (``limit`` is the page size)."""
        cursor: str | None = None
        while True:
            page = await self.list_sockets(
                node=node, state=state, label=label, limit=limit, cursor=cursor
            )
            for item in page.items:
                yield item
            if page.cursor is None or page.cursor == cursor:
                return
            cursor = page.cursor

    async def get_socket(self, client_uuid: str) -> Record:
        """``GET /v1/sockets/{uuid}``."""
        return dict(await self._get("v1", "sockets", client_uuid))

    async def send(self, client_uuid: str, payload: str | bytes, *, key: str | None = None) -> None:
        """``POST /v1/sockets/{uuid}/send``: a ``str`` goes as text, ``bytes`` as base64."""
        body = payload_body(payload)
        await self._post("v1", "sockets", client_uuid, "send", body=body, key=key)

    async def pause(self, client_uuid: str, *, key: str | None = None) -> None:
        """``POST /v1/sockets/{uuid}/pause``."""
        await self._post("v1", "sockets", client_uuid, "pause", key=key)

    async def resume(self, client_uuid: str, *, key: str | None = None) -> None:
        """``POST /v1/sockets/{uuid}/resume``."""
        await self._post("v1", "sockets", client_uuid, "resume", key=key)

    async def set_labels(
        self, client_uuid: str, labels: Mapping[str, str], *, key: str | None = None
    ) -> None:
        """``PUT /v1/sockets/{uuid}/labels``: replaces every label."""
        await self.act("PUT", "v1", "sockets", client_uuid, "labels", body=dict(labels), key=key)

    async def close_socket(self, client_uuid: str, *, key: str | None = None) -> None:
        """``DELETE /v1/sockets/{uuid}``."""
        await self.act("DELETE", "v1", "sockets", client_uuid, key=key)

    async def broadcast(
        self,
        target: str,
        payload: str | bytes,
        *,
        label: str | None = None,
        key: str | None = None,
    ) -> int:
        """``POST /v1/broadcast``; returns how many sockets the answering node wrote (the
        other nodes write theirs on receiving it from the bus)."""
        body = {"target": target, **payload_body(payload)}
        if label is not None:
            body["label"] = label
        return int((await self._post("v1", "broadcast", body=body, key=key))["delivered_local"])

    async def list_upstreams(self) -> list[Record]:
        """``GET /v1/upstreams``: each with every node's view of its health."""
        return list((await self._get("v1", "upstreams"))["items"])

    async def add_upstream(
        self,
        host: str,
        port: int,
        *,
        ready_timeout: float | None = None,
        alive_timeout: float | None = None,
        tls: bool = False,
        server_name: str | None = None,
        key: str | None = None,
    ) -> Record:
        """``POST /v1/upstreams``; timeouts left out take the server's defaults; ``tls``
        (checked against ``server_name``, else the host) uses the nodes' own TLS files."""
        body: Record = {"host": host, "port": port}
        if tls:
            body["tls"] = True
        if server_name is not None:
            body["server_name"] = server_name
        if ready_timeout is not None:
            body["ready_timeout"] = ready_timeout
        if alive_timeout is not None:
            body["alive_timeout"] = alive_timeout
        return dict(await self._post("v1", "upstreams", body=body, key=key))

    async def remove_upstream(self, upstream_id: str, *, key: str | None = None) -> None:
        """``DELETE /v1/upstreams/{id}``."""
        await self.act("DELETE", "v1", "upstreams", upstream_id, key=key)

    async def drain_upstream(self, upstream_id: str, *, key: str | None = None) -> Record:
        """``POST /v1/upstreams/{id}/drain``."""
        return dict(await self._post("v1", "upstreams", upstream_id, "drain", key=key))

    async def livez(self) -> Record:
        """``GET /livez``."""
        return dict(await self._get("livez"))

    async def readyz(self) -> Record:
        """``GET /readyz``: ``{"ready": bool, ...}``; a 503 "not ready" is an answer too."""
        return dict((await self.request("GET", "readyz", ok=(200, 503)))[1])

    async def metrics(self) -> str:
        """``GET /metrics``: the Prometheus text."""
        status, reason, raw = await self.exchange("GET", self._url("metrics"))
        if status != 200:
            raise error_from_answer(status, reason, raw)
        return raw.decode("utf-8", "replace")

    async def openapi(self) -> Record:
        """``GET /openapi.json``."""
        return dict(await self._get("openapi.json"))
