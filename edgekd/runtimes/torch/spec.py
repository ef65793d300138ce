"""The torch runtime's spec and capability rows."""

from __future__ import annotations

from edgekd.runtimes._table import Capability, RuntimeSpec, register

NAME = "torch"

SPEC = register(
    RuntimeSpec(NAME, formats=("torch",), suffixes={".pt": "torch"}, device_kinds=("cpu", "cuda"),
                default_device="cpu", profile_fields=("device",), module="torch", install="pip install torch",
                session="edgekd.runtimes.torch.session", libraries=("torch",), rank=0,
                session_imports=("edgekd",)),
    (Capability(NAME, "fp32", "torch", None, (), None, "the teacher and student themselves, in eager PyTorch"),
     Capability(NAME, "bf16", "torch", None, (), "bf16", "eager PyTorch under bf16 autocast")),
)
