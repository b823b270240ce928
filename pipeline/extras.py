"""What an installation has: ``pip install veritrain`` verifies runs (verify, audit, status,
schema); training, replaying steps and checking fraud proofs need the ``train`` extra (the training
stack, Prefect for ``run``, and the report's plotting for the flow's report artifact); a prove
pool's workers and ``deploy-prove`` need the ``prove`` extra (Prefect alone: provers never train);
``report`` needs the ``report`` extra (matplotlib and jinja2), ``sign-checkpoint`` the ``sign``
extra (OpenSSF model_signing).

A command that needs an extra says so in one line before it starts, instead of failing on an
import halfway through.
"""

from __future__ import annotations

import importlib.util

from veritrain.pipeline.errors import MissingExtraError

# Import name of each distribution of an extra in pyproject.toml's [project.optional-dependencies]
# (tests/test_slim.py checks the two agree).
EXTRAS = {
    "train": {
        "torch": "torch",
        "numpy": "numpy",
        "scikit-learn": "sklearn",
        "prefect": "prefect",
        "matplotlib": "matplotlib",
        "jinja2": "jinja2",
    },
    "prove": {"prefect": "prefect"},
    "report": {"matplotlib": "matplotlib", "jinja2": "jinja2"},
    "sign": {"model-signing": "model_signing"},
}


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # a finder refusing the name: absent for our purposes
        return False


def require_extra(extra: str, what: str) -> None:
    """Raises MissingExtraError naming ``what`` unless every distribution of ``extra`` is
    importable."""
    missing = [dist for dist, module in EXTRAS[extra].items() if not _installed(module)]
    if missing:
        raise MissingExtraError(
            f"{what} needs {', '.join(missing)}, which this installation lacks: "
            f"pip install 'veritrain[{extra}]'"
        )
