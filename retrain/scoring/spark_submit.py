"""``spark-submit`` entry point for scoring: the arguments of ``retrain score``.

``spark-submit --master yarn .../retrain/scoring/spark_submit.py --release MD5 --table requests
--ds 2026-11-01 --out scores``; the master, deploy mode and executor settings are spark-submit's.
"""

from __future__ import annotations

import sys

from retrain.cli import main

if __name__ == "__main__":
    sys.exit(main(["score", *sys.argv[1:]]))
