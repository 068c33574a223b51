"""The benchmark scripts run as ``python benchmarks/<script>.py``, which puts that folder on
``sys.path``; their tests import them the same way."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
