"""What a verified run publishes: the audit report (``report.py``, drawn by ``render.py``),
in-toto attestations (``attest.py``) and OpenSSF model signatures (``modelsign.py``).

Imports: every wing below it, ``verify`` above all.
"""
