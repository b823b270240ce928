"""veritrain's orchestration layer and command line (the only layer that may import prefect)."""
