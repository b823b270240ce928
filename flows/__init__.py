"""veritrain's orchestration layer and command line (the only layer that may import prefect)."""

import os

if __name__ != "veritrain.flows":  # the checkout's root is on the path too
    raise ImportError(f"import veritrain.flows, not {__name__}")

# Nothing leaves the machine but what the user points at: no Prefect telemetry, however the flows
# are started (the CLI, a worker, a user's own script).
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
