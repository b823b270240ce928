"""Checkpoints without torch: the tensors a checkpoint must hold for a spec (``tensors.py``) and the
state digest of named tensors or of a checkpoint file (``digest.py``), which verifiers recompute.

Imports: ``store``, ``run``. Never torch.
"""
