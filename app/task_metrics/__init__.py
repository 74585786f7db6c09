"""Task metrics: tasks, failures and task time per daemon and for the fleet, over time."""
