"""The edgekd device runner's runtime-neutral core: protocol, timing, statistics, environment and result I/O.

It needs only Python 3.8+ and numpy. The runtime comes from a session module, one per runtime package
(``edgekd/runtimes/<name>/session.py``, numpy + that runtime only), that the host copies beside this file as
``edgekd_session.py``; both go into a fresh folder of their own (a temporary folder locally, a per-run folder over
ssh) and run from there, so none of edgekd's folders is on the runner's ``sys.path``::

    python edgekd_device_runner.py spec.json result.json

A session module provides ``Session(path, settings, shape=None)`` with ``input_shape()`` (``None`` for a dynamic
dimension), ``prepare(shape)`` (compile or set up for a static input shape), ``bind(x)`` → ``(call, output,
runtime_latency)`` (a no-argument call running one inference on ``x`` bound once, a function returning its logits,
and one returning the runtime's own latency of the last call in ms, or None) and ``describe()`` (runtime, version,
device and precision in force).

``spec.json`` (written by :mod:`edgekd.bench.measure`) names the artifact, the runtime's module to import (timed
apart from loading), the session module and the settings edgekd chose (threads, providers, OpenVINO compile config
with its explicit ``INFERENCE_PRECISION_HINT``, CUDA device), the batch sizes and the protocol. ``result.json``
holds, per batch size, the statistics of :func:`summarize`; the cold start; the peak resident memory; the harness
overhead and the environment (:func:`environment`). On failure it holds ``error``
(``kind``: ``load`` for an artifact the runtime refuses, ``run`` for a crash while running) and the exit status is 1.

Protocol (the rigour of trtexec and benchmark_app): warm-up until both ``warmup_runs`` calls and ``warmup_seconds``
have passed; then timed calls until both ``runs`` calls and ``min_seconds`` have passed, or ``max_seconds`` (at least
one call). Each call is timed alone with ``time.perf_counter_ns`` around the session's bound call: the loop adds no
Python work inside the timed region beyond what the session's call does.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import re
import resource
import shutil
import signal
import subprocess
import sys
import time

import numpy as np

SCHEMA = 1
SESSION_MODULE = "edgekd_session"
"""The module name the host copies the runtime's session file under, beside this file."""
_PERCENTILES = (50, 90, 95, 99)


def summarize(durations_ns, batch_size=1):
    """Latency statistics (milliseconds) of ``durations_ns``: ``p50/p90/p95/p99`` (numpy's linear interpolation
    between order statistics, as trtexec and Olive), ``mean``, ``std`` (population), ``min``, ``max``, ``runs``,
    ``cv`` = std / mean (the coefficient of variation trtexec checks) and ``throughput_per_s`` = batch / mean."""
    ms = np.asarray(durations_ns, dtype=np.float64) / 1e6
    if ms.ndim != 1 or ms.size == 0:
        raise ValueError("latency statistics need a non-empty 1-D sequence of durations")
    stats = {f"p{q}": float(v) for q, v in zip(_PERCENTILES, np.percentile(ms, _PERCENTILES))}
    mean = float(ms.mean())
    stats.update(mean=mean, std=float(ms.std()), min=float(ms.min()), max=float(ms.max()), runs=int(ms.size),
                 cv=float(ms.std() / mean) if mean > 0 else 0.0,
                 throughput_per_s=float(batch_size * 1e3 / mean) if mean > 0 else 0.0)
    return stats


def thin_samples(durations_ns, limit=1000):
    """The durations in milliseconds (rounded to 0.1 µs), at most ``limit`` of them: a longer series is thinned to
    ``limit`` samples evenly spaced in time, so drift over the run stays visible and the result stays small."""
    ms = np.asarray(durations_ns, dtype=np.float64) / 1e6
    if ms.size > limit:
        ms = ms[np.linspace(0, ms.size - 1, limit).round().astype(int)]
    return [round(float(v), 4) for v in ms]


def stability(stats, cv_threshold):
    """``{cv, threshold, unstable, note}``: trtexec warns when the coefficient of variation of GPU compute time
    exceeds 1 %; a CPU shared with other work rarely gets there, so the threshold is the protocol's. An unstable
    measurement is flagged beside its figures, never dropped."""
    unstable = stats["cv"] > cv_threshold
    note = (f"unstable: coefficient of variation {stats['cv']:.1%} > {cv_threshold:.0%} (other load, frequency "
            "scaling or thermal throttling; lock clocks, idle the machine, or run longer)") if unstable else "stable"
    return {"cv": stats["cv"], "threshold": cv_threshold, "unstable": unstable, "note": note}


def timed_loop(fn, warmup_runs=20, warmup_seconds=0.0, runs=200, min_seconds=0.0, max_seconds=30.0,
               clock=time.perf_counter_ns, after=None, begin_timed=None):
    """Durations (ns) of timed calls of ``fn`` after the warm-up, following the protocol above. ``after`` (if given)
    is called after each timed call, outside the timed region (e.g. to read the runtime's own latency);
    ``begin_timed`` once between the warm-up and the first timed call (e.g. to start an energy meter)."""
    if warmup_runs < 0 or runs < 1 or warmup_seconds < 0 or min_seconds < 0 or max_seconds <= 0:
        raise ValueError(f"need warmup_runs >= 0, runs >= 1, warmup/min seconds >= 0 and max_seconds > 0; got "
                         f"{warmup_runs}, {runs}, {warmup_seconds}, {min_seconds}, {max_seconds}")
    start = clock()
    count = 0
    warm_ns = int(warmup_seconds * 1e9)
    while count < warmup_runs or clock() - start < warm_ns:
        fn()
        count += 1
    durations = []
    if begin_timed is not None:
        begin_timed()
    begin = clock()
    min_ns, max_ns = int(min_seconds * 1e9), int(max_seconds * 1e9)
    while True:
        t0 = clock()
        fn()
        t1 = clock()
        durations.append(t1 - t0)
        if after is not None:
            after()
        elapsed = t1 - begin
        if elapsed >= max_ns or (len(durations) >= runs and elapsed >= min_ns):
            return durations


def harness_overhead(runs=2000, clock=time.perf_counter_ns):
    """Statistics of an empty callable through the same timed region: what the timer and the Python call cost."""
    return summarize(timed_loop(lambda: None, warmup_runs=100, runs=runs, max_seconds=5.0, clock=clock))


# ---------------------------------------------------------------- environment

def _read(path):
    try:
        with open(path) as handle:
            return handle.read().strip()
    except OSError:
        return None


def _unavailable(why):
    return "not available (" + why + ")"


def cpu_info(text=None):
    """CPU model and flags from ``/proc/cpuinfo`` (x86: ``model name``/``flags``; Arm: ``Features``, ``CPU part``,
    the board from ``Model`` or the device tree)."""
    text = _read("/proc/cpuinfo") if text is None else text
    if not text:
        return {"model": platform.processor() or _unavailable("/proc/cpuinfo not readable"), "flags": []}
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    flags = (fields.get("flags") or fields.get("Features") or "").split()
    model = fields.get("model name") or fields.get("Model") or fields.get("Hardware") or fields.get("CPU part")
    board = _read("/proc/device-tree/model")
    return {"model": model or _unavailable("no model name in /proc/cpuinfo"), "flags": sorted(set(flags)),
            "board": board.rstrip("\x00") if board else None}


def cpu_frequency():
    """Governors and current/maximum frequencies (MHz) over the CPUs in ``/sys/devices/system/cpu``."""
    root = "/sys/devices/system/cpu"
    try:
        cpus = sorted(d for d in os.listdir(root) if re.fullmatch(r"cpu\d+", d))
    except OSError:
        cpus = []
    governors, current, maximum = set(), [], []
    for cpu in cpus:
        base = os.path.join(root, cpu, "cpufreq")
        governor = _read(os.path.join(base, "scaling_governor"))
        if governor:
            governors.add(governor)
        for name, into in (("scaling_cur_freq", current), ("cpuinfo_max_freq", maximum)):
            value = _read(os.path.join(base, name))
            if value and value.isdigit():
                into.append(int(value) / 1000)
    why = _unavailable("no cpufreq in /sys (a VM or container hides it)")
    return {"governor": sorted(governors) if governors else why,
            "cur_mhz": {"min": min(current), "max": max(current)} if current else why,
            "max_mhz": max(maximum) if maximum else why}


def thermal():
    """Temperatures (°C) of ``/sys/class/thermal`` zones."""
    root = "/sys/class/thermal"
    zones = {}
    try:
        names = sorted(d for d in os.listdir(root) if d.startswith("thermal_zone"))
    except OSError:
        names = []
    for name in names:
        temp = _read(os.path.join(root, name, "temp"))
        if temp and temp.lstrip("-").isdigit():
            zones[_read(os.path.join(root, name, "type")) or name] = int(temp) / 1000
    return zones or _unavailable("no readable /sys/class/thermal zones")


def _command(args):
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, str(exc).splitlines()[0]
    if done.returncode != 0:
        return None, (done.stderr.strip().splitlines() or ["exit " + str(done.returncode)])[-1]
    return done.stdout.strip(), None


def jetson_state():
    """nvpmodel power mode and whether ``jetson_clocks`` pinned the clocks, where this is a Jetson."""
    if not os.path.exists("/etc/nv_tegra_release"):
        return _unavailable("not a Jetson: /etc/nv_tegra_release absent")
    mode, why = _command(["nvpmodel", "-q"])
    clocks, why_clocks = _command(["jetson_clocks", "--show"])
    return {"nvpmodel": mode if mode is not None else _unavailable(why),
            "jetson_clocks": clocks if clocks is not None else _unavailable(why_clocks + "; needs root")}


#: bits of ``vcgencmd get_throttled`` (Raspberry Pi firmware documentation)
THROTTLE_BITS = {0: "under-voltage now", 1: "arm frequency capped now", 2: "throttled now",
                 3: "soft temperature limit now", 16: "under-voltage occurred", 17: "arm frequency capping occurred",
                 18: "throttling occurred", 19: "soft temperature limit occurred"}


def throttled(text):
    """The flags of a ``throttled=0x50005`` line of ``vcgencmd get_throttled``."""
    value = int(text.strip().split("=")[-1], 16)
    return {"raw": hex(value), "flags": [name for bit, name in sorted(THROTTLE_BITS.items()) if value >> bit & 1]}


def pi_throttling():
    """Raspberry Pi throttling flags from ``vcgencmd get_throttled``, where the command exists."""
    out, why = _command(["vcgencmd", "get_throttled"])
    return throttled(out) if out else _unavailable(why or "vcgencmd printed nothing")


def environment():
    """What the figures were measured on: CPU, frequency, load, thermal state and board-specific state."""
    try:
        load = list(os.getloadavg())
    except OSError:
        load = _unavailable("os.getloadavg unsupported")
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    return {"host": platform.node(), "os": platform.platform(), "machine": platform.machine(),
            "python": platform.python_version(), "numpy": np.__version__, "cpu": cpu_info(),
            "logical_cpus": os.cpu_count(), "usable_cpus": affinity, "frequency": cpu_frequency(),
            "load_average": load, "thermal_c": thermal(), "jetson": jetson_state(), "pi_throttling": pi_throttling()}


def peak_memory():
    """Peak resident memory of this process: ``VmHWM`` of ``/proc/self/status`` (Linux), else ``ru_maxrss``."""
    status = _read("/proc/self/status") or ""
    found = {k: int(v) / 1024 for k, v in re.findall(r"^(VmHWM|VmRSS):\s+(\d+) kB", status, re.M)}
    if "VmHWM" in found:
        return {"peak_rss_mb": found["VmHWM"], "method": "VmHWM of the runner process"}
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, kB elsewhere
    return {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20,
            "method": "ru_maxrss of the runner process"}


# ---------------------------------------------------------------- energy

def rapl_zones(root="/sys/class/powercap"):
    """``{name: (energy_uj path, max_energy_range_uj)}`` of the readable top-level RAPL packages, or why none."""
    try:
        names = sorted(d for d in os.listdir(root) if re.fullmatch(r"intel-rapl:\d+", d))
    except OSError:
        return _unavailable(root + " absent (no RAPL: not an Intel/AMD host, or a VM or container hides it)")
    zones = {}
    for name in names:
        base = os.path.join(root, name)
        if _read(os.path.join(base, "energy_uj")) is None:
            continue
        wrap = _read(os.path.join(base, "max_energy_range_uj"))
        zones[_read(os.path.join(base, "name")) or name] = (os.path.join(base, "energy_uj"),
                                                           int(wrap) if wrap and wrap.isdigit() else None)
    return zones or _unavailable("RAPL energy_uj not readable (root only since Linux 5.10)")


def _rapl_read(zones):
    return {name: int(_read(path) or 0) for name, (path, _) in zones.items()}


_RAIL = re.compile(r"\b([A-Z][A-Z0-9_]*) (\d+)(?:mW)?/(\d+)(?:mW)?")


def parse_tegrastats(line):
    """One ``tegrastats`` line: RAM (MB), per-CPU load/frequency, GPU load (``GR3D_FREQ``), temperatures (°C) and
    power rails (``NAME cur/avg``, mW; JetPack 5+ prints ``mW``, older releases bare numbers). ``power_mw`` is
    ``VDD_IN`` (the module's input) where printed, else the sum of the rails (AGX Orin prints no input rail)."""
    out = {}
    ram = re.search(r"RAM (\d+)/(\d+)MB", line)
    if ram:
        out["ram_mb"] = {"used": int(ram.group(1)), "total": int(ram.group(2))}
    cpu = re.search(r"CPU \[([^\]]*)\]", line)
    if cpu:
        out["cpu"] = [{"load": int(m.group(1)), "mhz": int(m.group(2)) if m.group(2) else None}
                      for m in re.finditer(r"(\d+)%(?:@(\d+))?", cpu.group(1))]
    gpu = re.search(r"GR3D_FREQ (\d+)%", line)
    if gpu:
        out["gpu_load"] = int(gpu.group(1))
    out["temperature_c"] = {m.group(1): float(m.group(2)) for m in re.finditer(r"(\w+)@(-?\d+(?:\.\d+)?)C\b", line)}
    rails = {m.group(1): {"mw": int(m.group(2)), "avg_mw": int(m.group(3))} for m in _RAIL.finditer(line)}
    for memory in ("RAM", "SWAP", "IRAM"):  # memory figures share the `used/total` shape
        rails.pop(memory, None)
    if rails:
        out["rails"] = rails
        out["power_mw"] = rails["VDD_IN"]["mw"] if "VDD_IN" in rails else sum(r["mw"] for r in rails.values())
        out["power_source"] = "VDD_IN" if "VDD_IN" in rails else "sum of rails"
    return out


class EnergyMeter:
    """Energy of the timed loop: RAPL counters (x86, where readable) or ``tegrastats`` samples (Jetson), else
    ``energy: not available (why)``."""

    def __init__(self, powercap="/sys/class/powercap"):
        self.zones = rapl_zones(powercap)
        self.tegrastats = None
        self.why = None
        if isinstance(self.zones, str):
            if shutil.which("tegrastats"):
                self.zones = None
            else:
                self.why = "energy: " + self.zones + "; tegrastats not found (not a Jetson)"

    def start(self):
        self.t0 = time.perf_counter()
        if isinstance(self.zones, dict):
            self.e0 = _rapl_read(self.zones)
        elif self.zones is None:
            self.tegrastats = subprocess.Popen(["tegrastats", "--interval", "100"], stdout=subprocess.PIPE, text=True)

    def stop(self, calls):
        seconds = time.perf_counter() - self.t0
        if self.why:
            return self.why
        if isinstance(self.zones, dict):
            e1 = _rapl_read(self.zones)
            joules = 0.0
            for name, (_, wrap) in self.zones.items():
                delta = e1[name] - self.e0[name]
                joules += (delta + (wrap or 0) if delta < 0 else delta) / 1e6
            method = "RAPL package counters (" + ", ".join(self.zones) + "): whole package, not the model alone"
        else:
            self.tegrastats.terminate()
            text = self.tegrastats.communicate(timeout=5)[0]
            powers = [p["power_mw"] for p in map(parse_tegrastats, text.splitlines()) if "power_mw" in p]
            if not powers:
                return "energy: not available (tegrastats printed no power rail)"
            joules = sum(powers) / len(powers) / 1e3 * seconds
            method = "tegrastats mean power x duration (" + str(len(powers)) + " samples): whole module"
        return {"joules": joules, "seconds": seconds, "mean_power_w": joules / seconds if seconds else 0.0,
                "mj_per_inference": joules * 1e3 / calls, "method": method}


# ---------------------------------------------------------------- runtimes

class Failed(Exception):
    """A failure to report in ``result.json``: ``kind`` is ``load`` or ``run``."""

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind


def _first_line(exc):
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def open_session(module, path, settings, shape=None):
    """``module.Session(path, settings, shape)``: the session of the artifact's runtime (``shape``: prepare it for
    this static input shape now). Any failure to open is reported as kind ``load``."""
    try:
        return module.Session(path, settings, shape)
    except Failed:
        raise
    except Exception as exc:  # the runtime refuses the artifact, its device or its settings
        raise Failed("load", _first_line(exc)) from exc


# ---------------------------------------------------------------- main

def _input(shape, batch, seed):
    return np.ascontiguousarray(np.random.default_rng(seed).random((batch, *shape), dtype=np.float32))


def bench(spec, folder):
    """The result of ``spec`` (a dict as in the module docstring); paths relative to ``folder``."""
    protocol = spec["protocol"]
    path = os.path.join(folder, spec["artifact"])
    started = time.perf_counter_ns()
    runtime_module = spec.get("import") or "numpy"
    try:
        importlib.import_module(runtime_module)
    except Exception as exc:  # ImportError, or a native library that fails to load
        raise Failed("load", "cannot import " + runtime_module + " (" + _first_line(exc) + ")") from exc
    imported = time.perf_counter_ns()
    sample = spec.get("sample_shape")
    batches = spec["batch_sizes"]
    first_shape = None if sample is None else [batches[0], *sample]
    module = importlib.import_module(spec.get("session") or SESSION_MODULE)
    session = open_session(module, path, spec.get("settings") or {}, first_shape)
    loaded = time.perf_counter_ns()
    if sample is None:
        dims = session.input_shape()[1:]
        if any(d is None for d in dims):
            raise Failed("load", "the artifact's input has dynamic dimensions " + str(dims) + "; give sample_shape")
        sample = dims
    results = []
    cold = None
    for batch in batches:
        x = _input(sample, batch, spec.get("seed", 0))
        try:
            session.prepare(x.shape)
        except Exception as exc:  # e.g. a shape the compiled model or the engine's profile does not take
            raise Failed("load", _first_line(exc)) from exc
        try:
            call, output, runtime_latency = session.bind(x)
            t0 = time.perf_counter_ns()
            call()
            t1 = time.perf_counter_ns()
            if cold is None:
                cold = {"import_ms": (imported - started) / 1e6, "load_ms": (loaded - imported) / 1e6,
                        "first_inference_ms": (t1 - t0) / 1e6, "cold_start_ms": (loaded - imported + t1 - t0) / 1e6,
                        "note": "session creation + first inference, in a fresh process (import excluded)"}
            reported = []
            meter = EnergyMeter()
            record = None if runtime_latency is None else lambda: reported.append(runtime_latency())
            durations = timed_loop(call, protocol["warmup_runs"], protocol["warmup_seconds"], protocol["runs"],
                                   protocol["min_seconds"], protocol["max_seconds"], after=record,
                                   begin_timed=meter.start)
            energy = meter.stop(len(durations))
        except Failed:
            raise
        except Exception as exc:  # the runtime crashed on a batch it accepted at load time
            raise Failed("run", "runtime failed on a batch of shape " + str(list(x.shape)) + " ("
                         + _first_line(exc) + ")") from exc
        stats = summarize(durations, batch)
        entry = {"batch_size": batch, "latency_ms": stats, "stability": stability(stats, protocol["cv_threshold"]),
                 "output_shape": list(np.asarray(output()).shape), "energy": energy,
                 "samples_ms": thin_samples(durations)}
        if reported:
            entry["runtime_reported_ms"] = summarize([int(r * 1e6) for r in reported], batch)
        results.append(entry)
    return {"schema": SCHEMA, "ok": True, "runtime": session.describe(), "batches": results, "cold_start": cold,
            "memory": peak_memory(), "harness_overhead_ms": harness_overhead(), "environment": environment(),
            "input": {"sample_shape": list(sample), "distribution": "uniform [0, 1)", "seed": spec.get("seed", 0)},
            "protocol": protocol, "files": []}


def main(argv=None):
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python edgekd_device_runner.py spec.json result.json", file=sys.stderr)
        return 2
    spec_path, result_path = args
    with open(spec_path) as handle:
        spec = json.load(handle)
    if hasattr(signal, "alarm") and spec.get("timeout_s"):
        signal.alarm(int(spec["timeout_s"]))  # die on the device too when the host gives up
    try:
        result, code = bench(spec, os.path.dirname(os.path.abspath(spec_path))), 0
    except Failed as exc:
        result, code = {"schema": SCHEMA, "ok": False, "error": {"kind": exc.kind, "message": str(exc)}}, 1
    tmp = result_path + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(result, handle)
    os.replace(tmp, result_path)
    return code


if __name__ == "__main__":
    sys.exit(main())
