"""This node's place in the fleet: registration and heartbeat, the copy of its sessions,
upstream reconciliation, dead nodes; and the backends (memory, Redis) chosen once."""
