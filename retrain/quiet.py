"""Keep library noise out of the suite's output: each library's own switch, else a narrow warning filter.

Called first thing by the suite's entry points (``retrain`` and ``make demo``). Whatever the user
configured wins: environment variables are only defaulted, and the user's ``-W`` / ``PYTHONWARNINGS``
filters come before these.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import warnings

# (start of the message, category, module that warns): library warnings with nothing for our users to act on.
KNOWN_WARNINGS: tuple[tuple[str, type[Warning], str], ...] = (
    # peft 0.21 reads the deprecated property on every model it wraps; fixed upstream, not ours to change.
    ("`is_gradient_checkpointing` is deprecated", FutureWarning, "transformers.modeling_utils"),
)


def quiet_libraries() -> None:
    """Default MLflow's and other libraries' log levels to WARNING and ignore :data:`KNOWN_WARNINGS`."""
    # MLflow sets its loggers' level from this when imported, undoing any setLevel made before.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    if "mlflow" in sys.modules:  # imported already (an embedding process): the variable came too late
        logging.getLogger("mlflow").setLevel(os.environ["MLFLOW_LOGGING_LEVEL"].upper())
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # log lines, not bars
    for noisy in ("great_expectations", "py4j", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    options = [f"ignore:{text}:{category.__name__}:{module}" for text, category, module in KNOWN_WARNINGS]
    user = os.environ.get("PYTHONWARNINGS", "")
    if options[0] not in user:
        # Spawned workers (the local fan-out) start from the environment; the user's entries, last, win.
        os.environ["PYTHONWARNINGS"] = ",".join([*options, *([user] if user else [])])
    for text, category, module in KNOWN_WARNINGS:
        # Appended: filters the user or the interpreter set earlier take precedence.
        pattern = re.escape(text)
        warnings.filterwarnings("ignore", pattern, category, f"{re.escape(module)}\\Z", append=True)
