"""Device profiles (`devices/*.yaml`): where a model must run, which runtimes it offers, and its budgets."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from edgekd.capabilities import RUNTIME_SPECS, device_index, device_kind, offered_precisions
from edgekd.config._base import Strict

Precision = Literal["fp32", "bf16", "fp16", "int8"]
if TYPE_CHECKING:
    RuntimeName = str
else:  # the runtimes of the capability table
    RuntimeName = Literal[tuple(RUNTIME_SPECS)]


class Access(Strict):
    """How to reach the device. ssh uses keys and host-key checking only; passwords are not accepted."""

    kind: Literal["local", "ssh", "adb"] = Field("local", description="local host, ssh host, or Android over adb")
    host: str | None = Field(None, description="ssh host name (kind: ssh)")
    user: str | None = Field(None, description="ssh user (kind: ssh)")
    port: int = Field(22, ge=1, le=65535, description="ssh port")
    identity_file: Path | None = Field(None, description="ssh private key file (never a password)")
    known_hosts: Path | None = Field(None, description="known_hosts file used with StrictHostKeyChecking=yes")
    serial: str | None = Field(None, description="adb device serial (kind: adb)")
    workdir: str = Field("/tmp/edgekd", description="scratch folder on the device")
    perf_binary: str | None = Field(None, description="adb: path on the device of the perf binary that runs the "
                                    "model (onnxruntime_perf_test built for Android)")
    python: str = Field("python3", description="Python interpreter on the device")

    @model_validator(mode="after")
    def _check_kind(self) -> Access:
        if self.kind == "ssh" and not self.host:
            raise ValueError("access.kind 'ssh' needs access.host")
        if self.kind == "adb" and not self.perf_binary:
            raise ValueError("access.kind 'adb' needs access.perf_binary (e.g. /data/local/tmp/onnxruntime_perf_test)")
        return self


class RuntimeTarget(Strict):
    """One runtime the device offers, with the precisions to build for it; checked against the capability table
    (:mod:`edgekd.capabilities`): precisions the runtime has, a device of a kind it runs on, its own fields only."""

    runtime: RuntimeName = Field(description="runtime that runs the artifact on the device")
    precisions: list[Precision] = Field(["fp32"], min_length=1, description="precisions to build and measure")
    providers: list[str] = Field(
        default_factory=list, description="ONNX Runtime execution providers in priority order (default: CPU)"
    )
    device: str = Field("", validate_default=True, description="OpenVINO device (CPU, GPU, NPU; default CPU), CUDA "
                        "device for TensorRT (default cuda:0) or torch (cpu, cuda:N; default cpu); not for ONNX "
                        "Runtime (see providers)")

    @field_validator("precisions")
    @classmethod
    def _offered(cls, precisions: list[str], info: ValidationInfo) -> list[str]:
        runtime = info.data.get("runtime")
        if runtime is None:
            return precisions
        offered = offered_precisions(runtime)
        missing = [p for p in precisions if p not in offered]
        if missing:
            raise ValueError(f"runtime {runtime!r} has no {', '.join(missing)} artifacts in edgekd "
                             f"(it offers {', '.join(offered)}: see `edgekd zoo runtimes`)")
        if len(set(precisions)) != len(precisions):
            raise ValueError(f"precisions listed twice: {precisions}")
        return precisions

    @field_validator("providers")
    @classmethod
    def _providers_for_onnxruntime(cls, providers: list[str], info: ValidationInfo) -> list[str]:
        runtime = info.data.get("runtime")
        if providers and runtime is not None and "providers" not in RUNTIME_SPECS[runtime].profile_fields:
            raise ValueError(f"providers are ONNX Runtime execution providers; runtime {runtime!r} takes none")
        return providers

    @field_validator("device")
    @classmethod
    def _device_of_the_runtime(cls, device: str, info: ValidationInfo) -> str:
        runtime = info.data.get("runtime")
        if runtime is None:
            return device
        spec = RUNTIME_SPECS[runtime]
        if not device:
            return spec.default_device
        if "device" not in spec.profile_fields:
            raise ValueError(f"runtime {runtime!r} takes no device (ONNX Runtime picks it with providers)")
        if device_kind(device) not in spec.device_kinds:
            raise ValueError(f"runtime {runtime!r} runs on {', '.join(spec.device_kinds)} devices, not {device!r}")
        device_index(device)  # a ValueError for a device number that is not one
        return device

    @property
    def kind(self) -> str:
        """The kind of :attr:`device` (``cpu``, ``gpu``, ``npu``, ``cuda``)."""
        return device_kind(self.device)


class Budgets(Strict):
    """What an artifact must meet to be selected. Unset budgets are not checked."""

    max_size_mb: float | None = Field(None, gt=0, description="largest artifact file size, MB (10^6 bytes)")
    max_latency_ms: float | None = Field(None, gt=0, description="largest latency at `latency_stat`, milliseconds")
    min_accuracy: float | None = Field(None, ge=0, le=1, description="lowest test accuracy (0-1)")
    max_macs: int | None = Field(None, gt=0, description="most multiply-accumulates of one forward pass of one "
                                 "input (counted on the torch model every artifact comes from)")
    latency_stat: Literal["p50", "p90", "p99", "mean"] = Field("p90", description="latency statistic budgeted")


class Device(Strict):
    """A device profile."""

    name: str = Field(description="profile name, e.g. x86-cpu")
    description: str = Field("", description="one line for `edgekd devices`")
    arch: str = Field("x86_64", description="CPU architecture of the device")
    accelerator: str | None = Field(None, description="GPU/NPU of the device, if any")
    threads: int | None = Field(None, ge=1, description="intra-op threads for every runtime (None: runtime default)")
    access: Access = Field(default_factory=Access, description="how to reach the device")
    runtimes: list[RuntimeTarget] = Field(min_length=1, description="runtimes and precisions to build for")
    budgets: Budgets = Field(default_factory=Budgets, description="selection budgets")

    def settings(self) -> dict[str, Any]:
        """The profile without its cosmetic fields (``description``, ``accelerator``: words for people), for cache
        keys and what is derived from the profile as a whole."""
        return self.model_dump(mode="json", exclude={"description", "accelerator"})

    @model_validator(mode="after")
    def _one_entry_per_runtime(self) -> Device:
        names = [r.runtime for r in self.runtimes]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"runtime {', '.join(twice)} listed more than once; list all its precisions in one entry")
        return self

    def runtime(self, name: str) -> RuntimeTarget | None:
        """The target entry for runtime ``name``, if the device offers it."""
        return next((r for r in self.runtimes if r.runtime == name), None)

    def device_of(self, name: str) -> str:
        """The device runtime ``name`` runs on (``cuda:1``, ``GPU``): the profile's, or the runtime's default when
        the profile does not list the runtime."""
        target = self.runtime(name)
        return target.device if target is not None and target.device else RUNTIME_SPECS[name].default_device
