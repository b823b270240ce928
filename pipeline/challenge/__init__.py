"""Optimistic challenges: replaying committed steps (``replay.py``), searching a range for the
first wrong step (``search.py``), and fraud proofs: building, filing and checking them
(``fraudproof.py``).

Imports: ``store``, ``run``, ``checkpoint``, ``data``, ``train``, ``prove``.
"""
