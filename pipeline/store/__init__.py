"""Storage: one write-once key space in a local folder or an S3 bucket, every key of a run's layout
(``keys.py``), and the rules for naming stores and runs (``uris.py``).

Imports: ``errors`` and the prover only.
"""
