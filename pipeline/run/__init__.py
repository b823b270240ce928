"""A run's committed identity and history: the spec (``spec.py``; its task, dataset sources and
loss in ``tasks.py``), the user's code it imports and its code identity (``code.py``), the
determinism profile, the signed hash-chained ledger and its entry kinds, and the manifest
``run.json`` with the objects a run stores (``manifest.py``).

Imports: ``store``.
"""
