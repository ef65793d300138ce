"""Intermediate features by module path, through removable forward hooks (the model is never edited).

Modelled on torchdistill's forward-hook manager::

    with FeatureTaps(student, ["layer2", "layer3"]) as taps:
        logits = student(x)
        f2, f3 = taps.features()

Each forward of the model starts a fresh collection (a pre-hook on the model clears the previous one). Outputs are
stored as clones, so an in-place operation after the tapped module (``ReLU(inplace=True)``, ``out += identity``)
cannot change them; the clone keeps the autograd graph, so student features carry gradients and teacher features
taken under ``torch.no_grad()`` do not.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from edgekd.errors import UserError

_LIST_ALL_BELOW = 40


class FeatureTaps:
    """Collects the outputs of ``model``'s modules at ``paths`` (``"layer2"``, ``"features.6"``) on every forward."""

    def __init__(self, model: nn.Module, paths: Sequence[str]) -> None:
        if isinstance(paths, str):
            raise TypeError("paths must be a list of module paths, not a single string")
        if not paths:
            raise UserError(
                f"no layer paths to tap in {type(model).__name__} (feature losses need student_taps and teacher_taps)"
            )
        modules = dict(model.named_modules())
        for path in paths:
            if not path or path not in modules:
                raise UserError(unknown_path_message(model, path))
        self.paths = list(paths)
        self._outputs: dict[str, Tensor] = {}
        self._handles: list[RemovableHandle] = [model.register_forward_pre_hook(self._start)]
        for path in dict.fromkeys(self.paths):
            self._handles.append(modules[path].register_forward_hook(self._recorder(path)))

    def features(self) -> list[Tensor]:
        """The tapped outputs of the last forward, in the order of ``paths``."""
        missing = [path for path in self.paths if path not in self._outputs]
        if missing:
            raise UserError(
                f"tapped layer(s) {', '.join(map(repr, missing))} did not run in the last forward "
                "(tap modules that the model's forward calls, and run the model before reading features)"
            )
        return [self._outputs[path] for path in self.paths]

    def clear(self) -> None:
        """Forget the collected outputs (they are also dropped at the start of every forward)."""
        self._outputs.clear()

    def close(self) -> None:
        """Remove every hook; the model is as it was before. Safe to call twice."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._outputs.clear()

    def __enter__(self) -> FeatureTaps:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def _start(self, module: nn.Module, args: Any) -> None:
        self._outputs.clear()

    def _recorder(self, path: str) -> Callable[[nn.Module, Any, Any], None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            self._outputs[path] = _tensor_of(path, output).clone()

        return hook


def _tensor_of(path: str, output: Any) -> Tensor:
    """The module's output tensor, or the first element of a tuple/list output."""
    if isinstance(output, Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], Tensor):
        return output[0]
    raise UserError(f"tapped layer {path!r} returns {type(output).__name__}, not a tensor; tap another module")


def unknown_path_message(model: nn.Module, path: str) -> str:
    """One line: the path is unknown, the closest valid paths, and the valid paths (top level only if many)."""
    valid = [name for name, _ in model.named_modules() if name]
    close = difflib.get_close_matches(path, valid, n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(map(repr, close))}? " if close else ""
    if len(valid) <= _LIST_ALL_BELOW:
        listing = f"valid paths: {', '.join(valid) or '(none: the model has no submodules)'}"
    else:
        top = [name for name in valid if "." not in name]
        nested = next((name for name in valid if "." in name), None)
        example = f"; nested ones use dots, e.g. {nested!r}" if nested else ""
        listing = f"valid top-level paths: {', '.join(top)} ({len(valid)} paths in all{example})"
    return f"unknown layer path {path!r} in {type(model).__name__}; {hint}{listing}"
