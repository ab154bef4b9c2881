"""``retrain templates``: the Argo WorkflowTemplates and the KServe InferenceService template as YAML.

They are generated from the code (the Hera builders, the InferenceService builder), so a wheel
install writes the same files this repository commits under ``argo_templates/`` and
``kserve_templates/`` (``make templates`` runs this; a test fails when they differ).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from retrain.outputs import OutputPathError

if TYPE_CHECKING:
    from retrain.cli.common import Commands

ARGO_DIR = "argo_templates"
KSERVE_DIR = "kserve_templates"


def _templates(args: argparse.Namespace) -> None:
    from retrain.argo_templates import write_templates
    from retrain.serving.inference_service import write_template

    out = Path(args.out)
    try:
        written = [*write_templates(out / ARGO_DIR), write_template(out / KSERVE_DIR)]
    except OSError as error:  # a file in the way, no permission: one line naming the path
        raise OutputPathError(
            f"cannot write templates under {out}: {error.strerror}: {error.filename}"
        ) from None
    for path in written:
        print(path)


def register(commands: Commands) -> None:
    """Add ``retrain templates``."""
    templates = commands.add_parser(
        "templates", help="write the Argo WorkflowTemplates and the KServe InferenceService template"
    )
    templates.add_argument(
        "--out",
        default=".",
        help=f"folder to write {ARGO_DIR}/ and {KSERVE_DIR}/ into (default: the current folder)",
    )
    templates.set_defaults(handler=_templates)
