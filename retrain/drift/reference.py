"""An adapter version's drift reference: small, fixed-size distributions of what it learned from.

Recorded when the adapter is trained, from the same engine pass that scores live rows (so the
features cannot skew between training and production), and stored beside the adapter's weights
(``drift_reference.json`` in its logged model): it travels with every release and is covered by the
release's SHA-256 of the adapter's files.

- The vocabulary (a bitset of token ids), the embedding centroid and the embeddings' principal
  directions come from the training rows.
- The distributions come from the holdout rows, which the adapter never trained on: they are what
  a fresh sample of the training data looks like to it, so live rows from an unchanged customer
  score like them. Each is kept as quantile bins (at most :data:`BINS`), not rows.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from retrain.errors import InputError

REFERENCE_FILE = "drift_reference.json"
FORMAT = 1
BINS = 5  # quantile bins per feature: few enough that a holdout of tens of rows estimates each share
FEATURES = ("tokens", "novelty", "embedding_distance", "embedding_pc1", "embedding_pc2", "score")
COMPONENTS = 2  # principal directions of the training embeddings: a new topic mix moves along them


class DriftReferenceError(InputError):
    """A reference file cannot be read; the message names the file."""


@dataclass(frozen=True)
class FeatureBins:
    """Bin ``i`` holds values in ``(edges[i-1], edges[i]]``; the outer bins are open-ended."""

    edges: tuple[float, ...]
    shares: tuple[float, ...]  # the reference's share of rows in each bin (len(edges) + 1)

    @classmethod
    def of(cls, values: np.ndarray) -> FeatureBins:
        quantiles = np.quantile(values, np.linspace(0, 1, BINS + 1)[1:-1]) if len(values) else []
        edges = tuple(float(x) for x in np.unique(quantiles))
        return cls(edges, tuple(float(x) for x in cls(edges, ()).counts(values) / max(1, len(values))))

    def counts(self, values: np.ndarray) -> np.ndarray:
        bins = np.searchsorted(np.asarray(self.edges, dtype=np.float64), values, side="left")
        return np.bincount(bins, minlength=len(self.edges) + 1).astype(np.float64)


@dataclass(frozen=True)
class DriftReference:
    rows: int  # holdout rows the distributions were measured on
    vocabulary: np.ndarray  # bool per token id: seen in the training rows
    centroid: np.ndarray  # float32 [hidden]: the training rows' mean embedding
    components: np.ndarray  # float32 [COMPONENTS, hidden]: their principal directions (unit rows)
    bins: dict[str, FeatureBins]

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": FORMAT,
                "rows": self.rows,
                "vocabulary_size": len(self.vocabulary),
                "vocabulary": base64.b64encode(np.packbits(self.vocabulary).tobytes()).decode(),
                "centroid": [round(float(x), 6) for x in self.centroid],
                "components": [[round(float(x), 6) for x in row] for row in self.components],
                "bins": {name: {"edges": b.edges, "shares": b.shares} for name, b in self.bins.items()},
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> DriftReference:
        data = json.loads(text)
        if data.get("format") != FORMAT:
            raise ValueError(f"format {data.get('format')!r}, expected {FORMAT}")
        size = int(data["vocabulary_size"])
        packed = np.frombuffer(base64.b64decode(data["vocabulary"], validate=True), dtype=np.uint8)
        vocabulary = np.unpackbits(packed, count=size).astype(bool)
        bins = {
            name: FeatureBins(tuple(map(float, b["edges"])), tuple(map(float, b["shares"])))
            for name, b in data["bins"].items()
        }
        if sorted(bins) != sorted(FEATURES) or any(len(b.shares) != len(b.edges) + 1 for b in bins.values()):
            raise ValueError(f"bins for {sorted(bins)}, expected one set per feature of {list(FEATURES)}")
        centroid = np.asarray(data["centroid"], dtype=np.float32)
        components = np.asarray(data["components"], dtype=np.float32).reshape(-1, len(centroid))
        return cls(int(data["rows"]), vocabulary, centroid, components, bins)

    @classmethod
    def read(cls, path: Path) -> DriftReference:
        """The reference in ``path``; :class:`DriftReferenceError` names the file if it is unreadable."""
        try:
            return cls.from_json(path.read_text())
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise DriftReferenceError(f"drift reference {path} is unreadable: {error}") from None

    def write(self, adapter_dir: Path) -> Path:
        path = Path(adapter_dir) / REFERENCE_FILE
        path.write_text(self.to_json())
        return path


def read_references(adapter_dirs: dict[str, Path]) -> tuple[dict[str, DriftReference], dict[str, str]]:
    """Each customer's reference, and why the others have none (missing or unreadable file)."""
    references: dict[str, DriftReference] = {}
    missing: dict[str, str] = {}
    for customer, adapter_dir in adapter_dirs.items():
        path = Path(adapter_dir) / REFERENCE_FILE
        if not path.is_file():
            missing[customer] = f"no {REFERENCE_FILE} (adapter trained before drift references were recorded)"
            continue
        try:
            references[customer] = DriftReference.read(path)
        except DriftReferenceError as error:
            missing[customer] = str(error)
    return references, missing
