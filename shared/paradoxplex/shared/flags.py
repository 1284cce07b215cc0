"""How the settings show on the command line: each flag's help, the default and choices it
shows, its metavar; ``add_node_arguments`` puts them on a parser (``paradoxplex node``).

Rules:
- Every flag defaults to None, so that a flag not given can be told from one given (flag >
  env > TOML > default is ``config.load_config``'s to decide).
- Each help text ends with the default and the environment variable, as the README's
  settings table shows them (``tests/unit/test_readme.py`` compares the two).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import fields

from paradoxplex.shared.balancing import ROUTING
from paradoxplex.shared.config import (
    BATCH_MODES,
    LOG_FORMATS,
    LOG_LEVELS,
    OVERFLOW_POLICIES,
    NodeConfig,
    env_name,
    flag_name,
)
from paradoxplex.shared.framing import FRAMERS

HELP: dict[str, str] = {
    "listen": "downstream TCP listener HOST:PORT",
    "admin": "admin HTTP API HOST:PORT",
    "upstream": "an initial upstream HOST:PORT (repeatable)",
    "redis": "join a fleet through this Redis URL (absent: single node, in-memory state); "
    "repeated or comma-separated: shards, the same list in the same order on every node",
    "redis_password_file": "file whose first line is the Redis password (replaces the URL's; "
    "kept out of ps)",
    "node_id": "this node's id",
    "framing": "raw (each read is one message), line, or length (4-byte big-endian prefix)",
    "max_frame": "largest frame in bytes; a larger one closes its socket",
    "routing": "round-robin (per message) or sticky (per socket)",
    "max_connections": "sockets served at once; beyond it new ones are refused",
    "max_connections_per_ip": "sockets served at once per client address (IPv6: per /64); "
    "0: no limit",
    "accept_rate": "new sockets per second per client address (a token bucket, burst one "
    "second's worth); 0: no limit",
    "idle_timeout": "close a socket idle for this many seconds",
    "lifecycle_events": "tell upstreams when sockets connect and disconnect",
    "workers": "node processes sharing the listener (needs --redis when over 1)",
    "admin_token": "bearer token the admin API requires (mandatory off loopback)",
    "key_prefix": "prefix of every Redis key and channel",
    "ready_timeout": "seconds an upstream has to answer ready=true",
    "alive_timeout": "seconds without live=true before an upstream leaves rotation",
    "upstream_queue": "messages queued per upstream link before backpressure",
    "max_unacked": "messages kept per upstream link until its upstream acknowledges them; "
    "past it the excess is sent at-most-once (counted)",
    "max_unacked_bytes": "payload bytes kept per upstream link until acknowledged (as "
    "--max-unacked)",
    "max_unacked_node": "messages kept until acknowledged for all upstream links together (as "
    "--max-unacked)",
    "max_unacked_node_bytes": "payload bytes kept until acknowledged for all upstream links "
    "together (as --max-unacked)",
    "max_deliveries": "deliveries of one message to upstreams without an acknowledgement "
    "before it is dropped (redelivery_exhausted)",
    "retry_budget": "redeliveries allowed per message sent for the first time (a token "
    "bucket per node, plus 10 per second, at most --max-unacked at once)",
    "streams": "bidirectional streams per upstream without the batch RPC",
    "batch": "auto: use the batchStreaming RPC when the upstream has it; off: never",
    "write_buffer": "bytes buffered per socket before the overflow policy",
    "overflow": "when a socket's write buffer is full: close the socket or drop the reply",
    "max_buffered": "reply bytes buffered for all sockets together; past it the sockets with "
    "the most buffered are closed; 0: no limit",
    "max_frames_per_second": "messages read per second per socket; past it reading that "
    "socket waits; 0: no limit",
    "hold_timeout": "seconds read data waits for a ready upstream before its socket closes",
    "drain_grace": "seconds sockets get to finish on SIGTERM before they are closed",
    "owner_timeout": "seconds to wait for another node to answer an admin command",
    "bus_hold": "seconds cross-node messages are held while Redis is unreachable",
    "heartbeat": "seconds between fleet heartbeats",
    "node_ttl": "seconds without a heartbeat before a node is dead",
    "log_level": "debug, info (lifecycle only), warning or error",
    "log_format": "text for people, json for log shippers (one object per line, with node_id)",
    "metrics_public": "serve /metrics without the admin token, as /livez and /readyz",
    "tls_cert": "PEM certificate (chain) of the listener: clients speak TLS (reloaded on SIGHUP)",
    "tls_key": "PEM private key of --tls-cert (reloaded on SIGHUP)",
    "tls_client_ca": "PEM CA bundle: clients must present a certificate it signed (mTLS)",
    "proxy_protocol": "every client starts with a PROXY protocol v1 or v2 header (a load "
    "balancer's), whose source address is the socket's remote address",
    "proxy_header_timeout": "seconds a client has to send its PROXY header",
    "admin_tls_cert": "PEM certificate of the admin API: it serves https (reloaded on SIGHUP)",
    "admin_tls_key": "PEM private key of --admin-tls-cert",
    "upstream_tls": "reach the --upstream upstreams over TLS",
    "upstream_tls_ca": "PEM CA bundle that upstream certificates must chain to (default: the "
    "system's)",
    "upstream_tls_cert": "PEM client certificate this node presents to TLS upstreams (mTLS)",
    "upstream_tls_key": "PEM private key of --upstream-tls-cert",
    "handoff_socket": "offer this node's listener and sockets to a successor process on this "
    "Unix socket path",
    "take_over": "take over the listener and every plain-TCP socket of the node offering them "
    "on this Unix socket path (its --handoff-socket), then serve as that node",
}

BOOL_FLAGS = ("lifecycle_events", "metrics_public", "proxy_protocol", "upstream_tls")
FILE_SETTINGS = (
    "tls_cert",
    "tls_key",
    "tls_client_ca",
    "admin_tls_cert",
    "admin_tls_key",
    "upstream_tls_ca",
    "upstream_tls_cert",
    "upstream_tls_key",
)
# settings that go together: (a setting, the one it needs)
DEFAULT_SHOWN = {
    **dict.fromkeys(FILE_SETTINGS, "none"),
    "node_id": "hostname plus a short random suffix",
    "upstream": "none",
    "redis": "none: single node",
    "admin_token": "none",
    "redis_password_file": "none",
    "handoff_socket": "none",
    "take_over": "none",
}
CHOICES: dict[str, Sequence[str]] = {
    "framing": tuple(FRAMERS),
    "routing": ROUTING,
    "batch": BATCH_MODES,
    "overflow": OVERFLOW_POLICIES,
    "log_level": LOG_LEVELS,
    "log_format": LOG_FORMATS,
}
REPEATED_FLAGS = ("upstream", "redis")
METAVARS = {
    "listen": "HOST:PORT",
    "admin": "HOST:PORT",
    "redis": "URL",
    "node_id": "ID",
    **dict.fromkeys(FILE_SETTINGS, "FILE"),
    "handoff_socket": "PATH",
    "take_over": "PATH",
}


def default_text(key: str) -> str:
    """The default of a setting as ``--help`` and the README show it."""
    if key in DEFAULT_SHOWN:
        return DEFAULT_SHOWN[key]
    value = next(spec.default for spec in fields(NodeConfig) if spec.name == key)
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def help_text(key: str) -> str:
    """What ``--help`` says of a setting: what it does, its default and its variable."""
    return f"{HELP[key]} (default: {default_text(key)}; env {env_name(key)})"


def add_node_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags for every setting, all defaulting to None so that unset flags can be told apart;
    the help of each shows its choices, its default and its environment variable."""
    parser.add_argument(
        "--config", metavar="FILE", help="TOML file with settings (env PARADOXPLEX_CONFIG)"
    )
    for spec in fields(NodeConfig):
        name, text = spec.name, help_text(spec.name)
        if name in BOOL_FLAGS:
            parser.add_argument(
                flag_name(name),
                dest=name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=text,
            )
        elif name in REPEATED_FLAGS:
            metavar = METAVARS.get(name, "HOST:PORT")
            parser.add_argument(
                flag_name(name), dest=name, action="append", metavar=metavar, help=text
            )
        elif name in CHOICES:
            metavar = "{" + ",".join(CHOICES[name]) + "}"
            parser.add_argument(flag_name(name), dest=name, metavar=metavar, help=text)
        else:
            parser.add_argument(flag_name(name), dest=name, metavar=METAVARS.get(name), help=text)
