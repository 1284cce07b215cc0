"""The other nodes a node has seen alive lately: whom it must hear say no before a 404.

Rules:
- A look at the fleet that could read it (``seen(alive, now)``) marks the nodes it found
  alive as seen then; one that could not (``blind()``) marks nothing.
- A node is forgotten once the fleet has been readable for ``ttl`` seconds without showing
  it alive. Time during which it could not be read does not count: while Redis is down, or
  after it came back empty until every node registered again, a node's liveness is missing
  from it, which is no sign that the node died.
- ``forget(node)``: that node was found dead and cleaned up.
- Whom a missed look-up asks (``to_ask``): every node listed now or seen lately, but not
  itself and not a node still ``starting`` (it claimed its id, its bus does not listen yet).
- Time is a parameter (``now``, seconds on any monotonic clock).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def to_ask(states: Mapping[str, str], seen: set[str], me: str) -> set[str]:
    """The nodes that must say no before a 404: those listed now (``states``: node id →
    its record's state) or ``seen`` lately, less ``me`` and the nodes still starting."""
    starting = {node for node, state in states.items() if state == "starting"}
    return (set(states) | seen) - starting - {me}


class Peers:
    def __init__(self, *, ttl: float) -> None:
        self.ttl = ttl
        self._seen: dict[str, float] = {}
        self._watching_since: float | None = None  # readable since, without a break

    def seen(self, alive: Iterable[str], now: float) -> None:
        """A look at the fleet found ``alive`` alive."""
        if self._watching_since is None:
            self._watching_since = now
        for node in alive:
            self._seen[node] = now

    def blind(self) -> None:
        """A look at the fleet could not read it."""
        self._watching_since = None

    def forget(self, node: str) -> None:
        self._seen.pop(node, None)

    def current(self, now: float) -> set[str]:
        """The nodes seen alive within ``ttl`` seconds of readable fleet."""
        since = self._watching_since
        if since is not None:
            horizon = now - self.ttl
            for node in [n for n, at in self._seen.items() if max(at, since) < horizon]:
                del self._seen[node]
        return set(self._seen)

    def __repr__(self) -> str:
        watching = "blind" if self._watching_since is None else "watching"
        return f"<Peers {len(self._seen)} {watching}>"
