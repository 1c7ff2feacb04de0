"""The compatibility matrix: the ecosystem's real TITO clients against every server profile.

Each client is a small adapter (one module each) that drives the real package through its own
public API; `matrix.py` runs them and compares the result with the reviewed `expected.json`.
"""

from .base import Cell, Target
from .matrix import Matrix, changes, run_live, run_on_fakes

__all__ = ["Cell", "Matrix", "Target", "changes", "run_live", "run_on_fakes"]
