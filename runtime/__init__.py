"""Runtime pieces every service shares: settings, the bus, provisioning, acking, logging.

Knows no service (import-linter keeps it so).
"""
