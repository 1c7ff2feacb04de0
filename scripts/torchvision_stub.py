"""Write a stand-in `torchvision` package for Dynamo's vLLM worker (real servers only).

The worker imports torchvision through transformers' Qwen2-VL image code at start-up, and PyPI's
torchvision does not import beside the CPU torch build. Nothing multimodal is ever called: every
attribute is an inert placeholder. Usage: python scripts/torchvision_stub.py DIR (then PYTHONPATH=DIR).
"""

import sys
from pathlib import Path

PLACEHOLDER = '''
class _Meta(type):
    def __getattr__(cls, name):  # class attributes: InterpolationMode.NEAREST_EXACT -> "NEAREST_EXACT"
        return name

    def __getitem__(cls, item):
        return cls


class _Inert(metaclass=_Meta):
    def __init__(self, *a, **k): pass
    def __call__(self, *a, **k): return self
    def __getattr__(self, name): return name


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    return _Meta(name, (_Inert,), {})
'''

root = Path(sys.argv[1]) / "torchvision"
modules = ["transforms", "transforms/v2", "transforms/v2/functional", "io", "ops", "utils", "models", "datasets",
           "transforms/functional"]
root.mkdir(parents=True, exist_ok=True)
(root / "__init__.py").write_text('__version__ = "0.28.0"\n' + PLACEHOLDER)
for m in modules:
    d = root / m
    d.mkdir(parents=True, exist_ok=True)
    (d / "__init__.py").write_text(PLACEHOLDER)
print(root)
