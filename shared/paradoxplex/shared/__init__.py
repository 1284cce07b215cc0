"""Decisions only: no sockets, gRPC, Redis, aiohttp or clocks. The node and admin do the I/O."""
