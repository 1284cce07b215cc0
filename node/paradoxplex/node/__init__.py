"""The edges and the wiring: listener, sessions, upstream links, Redis fleet, node, CLI."""
