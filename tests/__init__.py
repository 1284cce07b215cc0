"""The test suite.

The tests start subprocesses (the CLI, redis-server, upstreams) while gRPC's threads run in
the test process; gRPC's fork handlers can crash a forked child before it execs (seen as a
CLI exiting with -11). Every child execs at once and needs none of them, so they are off
(read when grpc is first imported, which this module runs before). In-process nodes run
gRPC's polling as the CLI sets it (``paradoxplex.node.grpc_env``).
"""

import os

from paradoxplex.node.grpc_env import DEFAULTS

os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
os.environ.setdefault("GRPC_EXPERIMENTS", DEFAULTS["GRPC_EXPERIMENTS"])
