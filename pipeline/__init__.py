"""veritrain's library, grouped into wings by job. It never imports prefect.

From the bottom up; a wing imports only the wings before it (tests/test_house.py checks it):

- ``store``: the write-once key space (local folder or S3), store keys, naming rules
- ``run``: the spec, determinism profile, signed ledger, its entries and the manifest
- ``checkpoint``: the tensors a checkpoint holds and state digests, without torch
- ``data``: datasets and their commitment
- ``train``: the training loop with a record per step (torch), canonical mode, preflight
- ``prove``: the guest's input, proof parts and joins, finalizing an epoch
- ``challenge``: replay, searching for the first wrong step, fraud proofs
- ``verify``: named checks, trust policy, finality, disputes, audits (no torch)
- ``publish``: the audit report, in-toto attestations, model signatures

``errors`` (the error kinds, each with its exit code), ``extras`` (what an installation has) and
``documents`` (the one loader of YAML and JSON, with size and depth limits) serve every wing.
"""

if __name__ != "veritrain.pipeline":  # the checkout's root is on the path too
    raise ImportError(f"import veritrain.pipeline, not {__name__}")
