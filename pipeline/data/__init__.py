"""Datasets and their commitment: loading a spec's dataset and its dataset root.

Imports: ``store``, ``run``, ``checkpoint``.
"""
