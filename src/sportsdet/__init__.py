"""sportsdet: recognise the sport in a photograph.

From Python::

    from sportsdet import Predictor

    predictor = Predictor("builtin")  # or a bundle folder, a training run folder, a .onnx file
    for result in predictor.predict_sources(["photo.jpg", "holiday/", "https://example.org/a.jpg"]):
        print(result.input, result.label, result.score, result.top_k, result.error)

The names below are imported on first use, so `import sportsdet` stays light (no numpy, Pillow
or onnxruntime until a model is asked for); at load this module imports only `_version` (which
the package's modules read the version from, not from here). Type checkers and editors see the
names with their types (the TYPE_CHECKING imports below); `from sportsdet import Predictor` was
Any to them.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what type checkers and editors see; at run time __getattr__ imports on first use
    from sportsdet.bundle import Bundle
    from sportsdet.errors import BundleError, SportsdetError
    from sportsdet.predict import PredictionResult, Predictor
    from sportsdet.run_folder import open_bundle as load_bundle

from sportsdet._version import __version__

# Public name -> the module that defines it ("module:name" where it has another name there).
_EXPORTS = {
    "Predictor": "sportsdet.predict",
    "PredictionResult": "sportsdet.predict",
    "load_bundle": "sportsdet.run_folder:open_bundle",  # takes a run folder and `builtin` too
    "Bundle": "sportsdet.bundle",
    "SportsdetError": "sportsdet.errors",
    "BundleError": "sportsdet.errors",
}

__all__ = [
    "Bundle",
    "BundleError",
    "PredictionResult",
    "Predictor",
    "SportsdetError",
    "__version__",
    "load_bundle",
]
# Every name but __version__ is one of _EXPORTS (tests/test_python_api.py checks the two agree).


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'sportsdet' has no attribute {name!r}")
    module, _, attribute = _EXPORTS[name].partition(":")
    return getattr(import_module(module), attribute or name)


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})  # the lazy names too, for tab completion
