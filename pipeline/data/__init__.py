"""Datasets and their commitment: loading a spec's dataset as its task reads it (a text corpus's
windows in ``text.py``) and its dataset root, and the sampler's batches.

Imports: ``store``, ``run``, ``checkpoint``.
"""
