"""Proving an epoch in the zkVM through the store: the guest's input (``guest_input.py``), execution
and proof parts with their joins (``parts.py``), finalizing an epoch with its receipt
(``finalize.py``), and the estimate of a proof's time with its progress (``estimate.py``).

Imports: ``store``, ``run``, ``checkpoint``, ``data``, ``train`` (canonical runs' models).
"""
