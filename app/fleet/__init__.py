"""Read-only views of the fleet for dashboards and scripts: /api/daemons, /api/events.

Unlike GET /api/daemon/health these never reap, so any number of screens can
watch without taking the specification's once-only stale report from anyone.
"""
