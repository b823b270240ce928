"""Verification of a stored run, trusting only what the verifier names: the run's named checks
(``verifier.py``), each epoch's (``epoch_checks.py``), the checks and reports they add up to
(``checks.py``), the trust roots and requirements (``policy.py``), when an epoch's challenge
window starts (``finality.py``), the run's disputes (``disputes.py``) and auditing one epoch into
a folder (``audit.py``). Imports no torch.

Imports: ``store``, ``run``, ``checkpoint``, ``challenge`` (disputes read filed fraud proofs;
re-executing one is imported lazily, where torch is needed).
"""
