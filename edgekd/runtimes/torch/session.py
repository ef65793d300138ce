"""The device runner's torch session: an edgekd torch artifact, run through edgekd's own torch Runner (so it needs
edgekd and torch on the device, unlike the other runtimes' sessions)."""

from __future__ import annotations


class LoadError(Exception):
    """The artifact cannot be opened here (the device runner reports kind ``load``)."""


class Session:
    """An edgekd torch artifact opened with the runner options edgekd chose."""

    def __init__(self, path, settings, shape=None):
        try:
            from edgekd.runtime import open_runner
            from edgekd.runtimes.torch.spec import NAME
        except ImportError as exc:
            raise LoadError("torch artifacts need edgekd installed beside the runner") from exc
        self.runner = open_runner(NAME, path, **settings)

    def input_shape(self):
        return list(self.runner.input_shape)

    def prepare(self, shape):
        """Nothing to compile per shape in eager torch."""

    def bind(self, x):
        return self.runner.bind(x)

    def describe(self):
        return self.runner.describe()
