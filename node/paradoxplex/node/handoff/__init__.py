"""Hot handoff: a running node gives its listener, every plain-TCP socket with its state, its
place on the fleet bus and its idempotency keys to a new process, which serves on as the
same node (``--handoff-socket`` offers, ``--take-over`` takes).

The decisions are plain code: ``steps`` (the sequence, its limits, what a failure at each
step leaves, which sockets move), ``terms`` (what must match), ``codec`` (the state to and
from ``handoff.proto``). The I/O: ``channel`` (frames and file descriptors on a Unix
socket), ``transports`` (the stand-ins), ``old`` (the running node's side: the offer and its
sequence), ``freeze`` (what the old side stops, lets go of, or thaws), ``transfer`` (the
state sent and received), ``new`` (its successor's side: reach and take over), ``adoption``
(the sockets made sessions again), ``relay`` (both sides after the switch). ``parts`` is the
node as both sides see it; ``succession`` builds them and runs them for the node.
"""
