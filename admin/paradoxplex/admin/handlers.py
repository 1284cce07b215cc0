"""The admin API's handlers: one method per route of ``routes.API``, in front of a ``Control``.

Rules:
- Handlers only parse (``inputs``), call ``Control`` and answer; every decision about input
  lives in ``inputs``, every decision about error answers in ``errors``.
- Bodies are JSON, at most ``max_body`` bytes (default 2 MiB, else 413).
- Actions answer 200 ``{"ok": true}``; DELETE answers 204; POST /v1/upstreams answers 201.
- Every action (the table's rows with ``keyed``) takes an ``Idempotency-Key`` header: the
  handler hands ``Control`` the key and the fingerprint of what the request asks (its
  operation, path parameters and parsed body), and keeps it on the request (``ONCE``) for
  the answer's ``Idempotent-Replayed``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from paradoxplex.admin import inputs, openapi, routes
from paradoxplex.admin.answers import json_response
from paradoxplex.admin.control import Control
from paradoxplex.admin.errors import ApiError
from paradoxplex.shared import idempotency
from paradoxplex.shared.errors import FleetUnavailable
from paradoxplex.shared.idempotency import Once

DEFAULT_MAX_BODY = 2 * 1024 * 1024
Route = tuple[str, str, Handler]
ONCE = web.RequestKey("once", Once)


class AdminHandlers:
    """One method per route; each parses with ``inputs``, calls ``Control`` and answers."""

    def __init__(
        self, control: Control, *, max_body: int = DEFAULT_MAX_BODY, secured: bool = True
    ) -> None:
        self.control = control
        self.max_body = max_body
        self._openapi = orjson.dumps(openapi.document(secured=secured))

    def __repr__(self) -> str:
        return f"<AdminHandlers node={self.control.node_id} max_body={self.max_body}>"

    def routes(self) -> list[Route]:
        """(method, router path, handler) for every row of ``routes.API``."""
        return [(row.method, row.router_path, getattr(self, row.handler)) for row in routes.API]

    async def read_json(self, request: web.Request) -> Any:
        """The request's JSON body: JSON content type (or none), at most ``max_body`` bytes."""
        inputs.check_content_type(request.headers.get(hdrs.CONTENT_TYPE))
        if (request.content_length or 0) > self.max_body:
            raise ApiError(413, "payload_too_large", f"the body is over {self.max_body} bytes")
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise ApiError(
                413, "payload_too_large", f"the body is over {self.max_body} bytes"
            ) from None
        return inputs.parse_json(raw)

    @staticmethod
    def once(request: web.Request, operation: str, *parts: idempotency.Part) -> Once | None:
        """The request's ``Idempotency-Key`` with the fingerprint of what it asks (None
        without a key); kept on the request for the answer's ``Idempotent-Replayed``."""
        key = idempotency.parse_key(request.headers.get(idempotency.HEADER))
        if key is None:
            return None
        once = request[ONCE] = Once(key, idempotency.fingerprint(operation, *parts))
        return once

    async def list_nodes(self, request: web.Request) -> web.Response:
        return json_response({"items": await self.control.list_nodes(), "cursor": None})

    async def drain_node(self, request: web.Request) -> web.Response:
        node_id = request.match_info["id"]
        once = self.once(request, "drain_node", node_id)
        return json_response(await self.control.drain_node(node_id, once=once))

    async def list_sockets(self, request: web.Request) -> web.Response:
        query = inputs.parse_socket_query(request.query.items())
        page = await self.control.list_sockets(
            node=query.node,
            state=query.state,
            label=query.label,
            limit=query.limit,
            cursor=query.cursor,
        )
        return json_response({"items": page.items, "cursor": page.cursor, "partial": page.partial})

    async def get_socket(self, request: web.Request) -> web.Response:
        client_uuid = inputs.parse_uuid(request.match_info["uuid"])
        return json_response(await self.control.get_socket(client_uuid))

    async def close_socket(self, request: web.Request) -> web.Response:
        client_uuid = inputs.parse_uuid(request.match_info["uuid"])
        await self.control.close(client_uuid, once=self.once(request, "close", client_uuid))
        return web.Response(status=204)

    async def send_to_socket(self, request: web.Request) -> web.Response:
        client_uuid = inputs.parse_uuid(request.match_info["uuid"])
        payload = inputs.parse_payload(await self.read_json(request))
        once = self.once(request, "send", client_uuid, payload)
        await self.control.send(client_uuid, payload, once=once)
        return json_response({"ok": True})

    async def pause_socket(self, request: web.Request) -> web.Response:
        return await self._act(request, "pause", self.control.pause)

    async def resume_socket(self, request: web.Request) -> web.Response:
        return await self._act(request, "resume", self.control.resume)

    async def _act(
        self, request: web.Request, operation: str, act: Callable[..., Awaitable[None]]
    ) -> web.Response:
        """A bodiless action on one socket (pause, resume)."""
        client_uuid = inputs.parse_uuid(request.match_info["uuid"])
        await act(client_uuid, once=self.once(request, operation, client_uuid))
        return json_response({"ok": True})

    async def set_socket_labels(self, request: web.Request) -> web.Response:
        client_uuid = inputs.parse_uuid(request.match_info["uuid"])
        labels = inputs.parse_labels(await self.read_json(request))
        once = self.once(request, "labels", client_uuid, labels)
        await self.control.set_labels(client_uuid, labels, once=once)
        return json_response({"ok": True})

    async def broadcast(self, request: web.Request) -> web.Response:
        wanted = inputs.parse_broadcast(await self.read_json(request))
        label = "=".join(wanted.label) if wanted.label else None
        once = self.once(request, "broadcast", wanted.target.value, label, wanted.payload)
        delivered = await self.control.broadcast(
            wanted.target, wanted.label, wanted.payload, once=once
        )
        return json_response({"delivered_local": delivered})

    async def list_upstreams(self, request: web.Request) -> web.Response:
        return json_response({"items": await self.control.list_upstreams(), "cursor": None})

    async def add_upstream(self, request: web.Request) -> web.Response:
        spec = inputs.parse_upstream(await self.read_json(request))
        once = self.once(request, "add_upstream", orjson.dumps(spec.to_dict()))
        return json_response(await self.control.add_upstream(spec, once=once), status=201)

    async def remove_upstream(self, request: web.Request) -> web.Response:
        upstream_id = request.match_info["id"]
        once = self.once(request, "remove_upstream", upstream_id)
        await self.control.remove_upstream(upstream_id, once=once)
        return web.Response(status=204)

    async def drain_upstream(self, request: web.Request) -> web.Response:
        upstream_id = request.match_info["id"]
        once = self.once(request, "drain_upstream", upstream_id)
        return json_response(await self.control.drain_upstream(upstream_id, once=once))

    async def livez(self, request: web.Request) -> web.Response:
        """Up, and who: a node starting with the same id asks this (``fleet.claim``)."""
        who = {"node": self.control.node_id, "incarnation": self.control.incarnation}
        if self.control.live():
            return json_response({"status": "ok", **who})
        return json_response({"status": "down", **who}, status=503)

    async def readyz(self, request: web.Request) -> web.Response:
        try:
            ready, detail = await self.control.ready()
        except FleetUnavailable as error:
            ready, detail = False, {"fleet": error.reason}
        body = {"ready": ready} | {key: value for key, value in detail.items() if key != "ready"}
        return json_response(body, status=200 if ready else 503)

    async def metrics(self, request: web.Request) -> web.Response:
        body, content_type = self.control.metrics()
        return web.Response(body=body, headers={hdrs.CONTENT_TYPE: content_type})

    async def openapi(self, request: web.Request) -> web.Response:
        return web.Response(body=self._openapi, content_type="application/json")
