"""The daemon registry: the TTL rule, the wire format, history and the service (no Flask)."""
