"""Training with a committed record for every step: the run being trained, its live state and
checkpoints (``trainer.py``), the loop that steps it (``loop.py``), what one step gives
(``step.py``), the networks a spec names (``networks.py``), the torch training state and its
checkpoints (``state.py``), the canonical fixed-point mode (``canonical.py``) and the checks
``veritrain run`` makes before it starts (``preflight.py``). Needs torch.

Imports: ``store``, ``run``, ``checkpoint``, ``data``.
"""
