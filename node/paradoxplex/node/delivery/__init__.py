"""Where replies and commands go: a socket here, the node that holds it, or every node; this
node's end of the fleet bus, per-owner batches, and admin commands answered here."""
