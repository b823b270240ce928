"""Datasets and their commitment: loading a spec's dataset and its dataset root, and the
sampler's batches.

Imports: ``store``, ``run``, ``checkpoint``.
"""
