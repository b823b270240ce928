"""veritrain's benchmarks: each prints a ratio against a baseline measured in the same run."""

if __name__ != "veritrain.bench":  # the checkout's root is on the path too
    raise ImportError(f"import veritrain.bench, not {__name__}")
