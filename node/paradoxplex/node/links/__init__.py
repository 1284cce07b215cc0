"""Upstream links: the pool that places socket data on them, one link per upstream (checks,
streams, its bounded queue), the gRPC channels under them, and their settings from the node's
config."""
