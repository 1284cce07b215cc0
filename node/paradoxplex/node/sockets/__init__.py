"""The downstream side: the listener, one session per socket, and hosting them (admission,
registration, the first-byte hold, the node-wide reply budget)."""
