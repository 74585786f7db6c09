"""``python -m daemon_health_agent run ... -- command``."""

from daemon_health_agent.cli import main

raise SystemExit(main())
