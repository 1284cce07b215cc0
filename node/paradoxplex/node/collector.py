"""Python's garbage collector, tuned for a process that holds many long-lived sockets.

Rules:
- Once the node has started (every library imported, every part built), what is alive then
  is frozen (``gc.freeze``): a full collection never scans it again. At start that is about
  50,000 objects (gRPC, aiohttp, redis-py, protobuf and the node's own). Objects made later,
  the sockets' included, are collected as before.
- Generation 0 is collected every ``GEN0`` allocations instead of CPython's 700, so the full
  collections that a burst of allocations triggers (10,000 broadcast writes, a reconnect
  storm's sessions) come far less often.
- Measured with a gc callback in the bench's broadcast case (10,000 sockets on one node):
  full collections of 24-54 ms ran during the fan-out (first arrival 55-72 ms; with this,
  7-8 ms and no full collection during it); at 1,000 closed-loop connections msgs/s rose
  ~17 % (bench/README.md).
"""

from __future__ import annotations

import gc

GEN0 = 10_000


def tune_collector() -> None:
    """Freeze what is alive now and collect generation 0 less often (see the rules)."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GEN0, gen1, gen2)
