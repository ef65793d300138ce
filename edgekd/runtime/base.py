"""One interface over every inference runtime: :class:`Runner`, the ``RUNTIMES`` capability table and its factory.

Every runner takes what every edgekd artifact takes (DESIGN.md, artifact contract): raw pixels scaled to [0, 1],
float32, NCHW; the normalisation is inside the artifact. It returns float32 logits.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, TypeVar

import numpy as np

from edgekd._registry import Registry
from edgekd.capabilities import FORMAT_SUFFIXES, RUNTIME_SPECS, offered_precisions
from edgekd.errors import UserError, first_line  # noqa: F401  (re-exported: the runners import it from here)

if TYPE_CHECKING:
    import torch

    from edgekd.data.images import ImageArray

    Images = np.ndarray | torch.Tensor | ImageArray

RUNTIMES: Registry[type[Runner]] = Registry("runtime")
"""Runtime name → :class:`Runner` subclass. Meta: ``options`` (the option names its constructor accepts) and, from
the capability table (:mod:`edgekd.capabilities`), ``formats`` (artifact formats it opens), ``precisions`` and
``devices`` (device kinds)."""

R = TypeVar("R", bound="type[Runner]")


def register_runtime(name: str, *, options: tuple[str, ...]) -> Callable[[R], R]:
    """Class decorator: add a runner to ``RUNTIMES`` with the options it accepts and its capabilities (its
    :class:`~edgekd.capabilities.RuntimeSpec` and rows), and set its ``name``."""
    spec = RUNTIME_SPECS[name]

    def decorator(cls: R) -> R:
        cls.name = name
        RUNTIMES.add(name, cls, formats=spec.formats, precisions=offered_precisions(name), devices=spec.device_kinds,
                     options=options)
        return cls

    return decorator


def artifact_format(path: Path) -> str:
    """The artifact format of ``path`` from its suffix, or a UserError listing the known suffixes."""
    try:
        return FORMAT_SUFFIXES[path.suffix.lower()]
    except KeyError:
        known = ", ".join(FORMAT_SUFFIXES)
        raise UserError(f"{path}: unknown artifact suffix {path.suffix!r}; expected one of {known}") from None


class Bound(NamedTuple):
    """Inputs bound once to a runner, for a timed loop: ``call()`` runs one inference with no per-call validation,
    conversion or copy; ``output()`` returns the last logits (a view where the runtime allows); ``runtime_latency()``
    is the runtime's own duration of the last call in milliseconds, where it measures one (else None)."""

    call: Callable[[], object]
    output: Callable[[], np.ndarray]
    runtime_latency: Callable[[], float] | None = None


class Runner(ABC):
    """A loaded artifact that maps a float32 NCHW batch in [0, 1] to float32 logits.

    Subclasses load in :meth:`_load`, run in :meth:`_run` and report their device in :meth:`describe`; this base
    class checks the path, the options (unknown ones are an error, never ignored) and the input batch.
    """

    name: ClassVar[str]

    def __init__(self, path: Path, *, threads: int | None = None, **options: Any) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise UserError(f"{self.path}: artifact not found")
        allowed = RUNTIMES.entry(self.name).meta["options"]
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            raise UserError(f"runtime {self.name!r}: unknown option(s) {', '.join(unknown)}; "
                            f"accepted: {', '.join(allowed) or 'none'}")
        if threads is not None and threads < 1:
            raise UserError(f"runtime {self.name!r}: threads must be >= 1, got {threads}")
        self.threads = threads
        self._load(**options)

    @abstractmethod
    def _load(self, *args: Any, **options: Any) -> None:
        """Open ``self.path`` with the runtime's ``options``, called by keyword only.

        Subclasses declare their options as keyword parameters with defaults; this ``(*args: Any, **options: Any)``
        signature is the one type checkers accept as overridden by any parameter list.
        """

    @abstractmethod
    def _run(self, x: np.ndarray) -> np.ndarray:
        """Logits for a checked float32 batch."""

    @property
    @abstractmethod
    def input_shape(self) -> tuple[int | None, ...]:
        """The artifact's input shape, ``None`` where a dimension is dynamic (usually the batch)."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """Runtime, version, device/providers, threads and ``inference_precision`` (the precision in force as
        compiled, never a guess), recorded in the manifest beside every measurement."""

    def close(self) -> None:
        """Release the runtime's resources (default: nothing to release)."""

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Logits (float32, batch × classes) of ``x`` (float32 NCHW in [0, 1])."""
        self._check_input(x)
        return np.asarray(self._run(np.ascontiguousarray(x)), dtype=np.float32)

    def bind(self, x: np.ndarray) -> Bound:
        """``x`` checked and bound once, for a timed loop (see :class:`Bound`). Runners whose runtime can bind
        inputs (ONNX Runtime I/O binding, OpenVINO input tensors) override this; the default calls :meth:`_run`."""
        self._check_input(x)
        x = np.ascontiguousarray(x)
        last: list[np.ndarray] = []

        def call() -> None:
            last[:] = [self._run(x)]

        call()
        return Bound(call, lambda: np.asarray(last[0], dtype=np.float32))

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_input(self, x: np.ndarray) -> None:
        expected = self.input_shape
        if not isinstance(x, np.ndarray) or x.dtype != np.float32:
            raise UserError(f"{self.path}: input must be a float32 numpy array, got {getattr(x, 'dtype', type(x))}")
        if x.ndim != len(expected) or any(e is not None and e != s for e, s in zip(expected, x.shape)):
            shown = tuple("?" if e is None else e for e in expected)
            raise UserError(f"{self.path}: input shape {tuple(x.shape)} does not match the artifact's {shown}")


def open_runner(runtime: str, path: Path, **options: Any) -> Runner:
    """Open ``path`` in ``runtime`` (a ``RUNTIMES`` name); options as the runner accepts (``threads``, ...)."""
    entry = RUNTIMES.entry(runtime)
    fmt = artifact_format(Path(path))
    if fmt not in entry.meta["formats"]:
        raise UserError(f"{path}: runtime {runtime!r} opens {', '.join(entry.meta['formats'])} artifacts, "
                        f"not {fmt}")
    return entry.obj(Path(path), **options)


def predict(runner: Callable[[np.ndarray], np.ndarray], x: Images, batch_size: int) -> np.ndarray:
    """Logits of ``runner`` for every sample of ``x`` (float32 NCHW in [0, 1]), computed ``batch_size`` at a time.

    ``x`` may be an on-disk :class:`~edgekd.data.images.ImageArray` (or a tensor): each batch is read and converted
    to a float32 array only when its turn comes, so memory follows the batch, not the split.

    An artifact with a fixed batch dimension ``b`` (e.g. a TensorRT engine built for batch 8) is fed batches of
    exactly ``b``: ``batch_size`` is replaced by ``b`` and the last batch is padded with zeros, whose logits are
    dropped, so every sample is scored once.
    """
    if len(x) == 0:
        raise ValueError("cannot run a runner on an empty batch")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    fixed = runner.input_shape[0] if isinstance(runner, Runner) else None
    step = fixed or batch_size
    outputs = []
    for start in range(0, len(x), step):
        batch = np.asarray(x[start:start + step], dtype=np.float32)
        real = len(batch)
        if fixed is not None and real < fixed:
            batch = np.concatenate([batch, np.zeros((fixed - real, *batch.shape[1:]), dtype=batch.dtype)])
        outputs.append(np.asarray(runner(batch), dtype=np.float32)[:real])
    return np.concatenate(outputs)


def evaluate_accuracy(runner: Callable[[np.ndarray], np.ndarray], x: Images, y: np.ndarray,
                      batch_size: int) -> float:
    """Top-1 accuracy (0–1) of ``runner`` on ``x`` with integer labels ``y``; batching as in :func:`predict`."""
    if len(x) != len(y):
        raise ValueError(f"{len(x)} samples but {len(y)} labels")
    return float((predict(runner, x, batch_size).argmax(axis=1) == np.asarray(y)).mean())
