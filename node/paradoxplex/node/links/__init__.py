"""Upstream links: the pool that places socket data on them, one link per upstream (checks,
streams, its bounded queue), and the gRPC channels under them."""
