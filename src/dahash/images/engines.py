"""The frozen backbone's forward pass on the CPU through ONNX Runtime: the ONNX export, made once
per model and cached, its check against torch, and the runner.

Why: the forward pass is most of what extraction, ``encode``, ``index build`` and ``serve`` cost
on a CPU, and ONNX Runtime ran an export of EfficientNet-Lite0 at 1.3-1.9x the project's fastest
torch path (benchmarks/README.md, "Inference engines"). ONNX Runtime is an optional extra, imported
only when asked for (``dahash[onnx]``). OpenVINO was measured and dropped: slower than ONNX Runtime
in every pipeline, 0.69-0.79x torch in two lanes, and a process that had run it crashed later
(a segmentation fault in an unrelated test; docs/usage.md).

An export is ``<stem>-<digest>.onnx`` with a sidecar ``<stem>-<digest>.json``: ``digest`` is the
sha256 of the model's state dict and the export settings, so another weights file, another torch
or other settings make another file, and the sidecar records the onnx file's own sha256, so a
damaged file is exported again. Both are written atomically. The sidecar also records, per
engine, the largest feature difference from torch on a fixed check batch: an engine is used only
within :data:`TOLERANCE` of torch.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dahash.errors import DahashError
from dahash.io import atomic_path, file_sha256, write_json

__all__ = ["ENGINES", "EXPORT_ENGINES", "AUTO_ORDER", "TOLERANCE", "OPSET", "installed", "onnx_export",
           "engine_runner", "check_engine", "EngineUnusable"]

ENGINES = ("torch", "onnxruntime", "auto")
# Engines that run the ONNX export, and the extra that installs each.
EXPORT_ENGINES = {"onnxruntime": "onnx"}
# The order 'auto' tries them in: the fastest first, as measured (benchmarks/README.md, "Inference engines").
AUTO_ORDER = ("onnxruntime",)
OPSET = 17
# Largest feature difference from torch an engine may make, relative to the largest torch feature
# of the check batch. Measured on EfficientNet-Lite0: ONNX Runtime 1.2e-6 (6.9e-6 on features up
# to 5.6), about what torch itself changes between batch sizes (InChunks: 7.6e-6 on 5.7).
TOLERANCE = 1e-5
_CHECK_BATCH = 4


class EngineUnusable(DahashError):
    """An engine that cannot run this backbone here (not installed, no export, or outside the tolerance)."""


def installed(engine: str) -> bool:
    """Whether ``engine``'s package can be imported."""
    module = {"torch": "torch", "onnxruntime": "onnxruntime"}[engine]
    try:
        __import__(module)
    except Exception:  # noqa: BLE001 - a broken install is as good as none
        return False
    return True


def _state_digest(model: nn.Module, settings: dict[str, Any]) -> str:
    """sha256 of every tensor of ``model``'s state dict (names, dtypes, shapes, bytes) and ``settings``."""
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _read_sidecar(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def onnx_export(model: nn.Module, crop: int, directory: Path, stem: str) -> Path:
    """The ONNX export of ``model`` (eval mode; (B, 3, crop, crop) -> (B, D), any B) in ``directory``:
    reused when its sidecar matches the model's digest and the file's sha256, else made again."""
    settings = {"opset": OPSET, "crop": crop, "torch": torch.__version__, "input": "NCHW float32",
                "exporter": "torchscript"}
    digest = _state_digest(model, settings)
    path = Path(directory) / f"{stem}-{digest[:16]}.onnx"
    sidecar = path.with_suffix(".json")
    meta = _read_sidecar(sidecar)
    if meta and meta.get("digest") == digest and path.is_file() and meta.get("file_sha256") == file_sha256(path):
        return path
    example = torch.zeros(1, 3, crop, crop)
    try:
        with atomic_path(path) as tmp, torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings of shape reads, the exporter's deprecations
            torch.onnx.export(model, (example,), str(tmp), input_names=["images"], output_names=["features"],
                              dynamic_axes={"images": {0: "batch"}, "features": {0: "batch"}},
                              opset_version=OPSET, dynamo=False)
    except OSError as exc:
        raise EngineUnusable(f"{directory}: cannot write the ONNX export ({exc.strerror or exc})") from exc
    except Exception as exc:  # noqa: BLE001 - the exporter raises many types on an unexportable model
        raise EngineUnusable(f"{stem}: torch.onnx.export failed ({type(exc).__name__}: "
                             f"{(str(exc).strip().splitlines() or [''])[0][:200]})") from exc
    try:
        write_json(sidecar, {"digest": digest, "file_sha256": file_sha256(path), "settings": settings, "checks": {}})
    except OSError as exc:
        raise EngineUnusable(f"{directory}: cannot write the ONNX export's sidecar ({exc.strerror or exc})") from exc
    return path


class OnnxRuntimeRunner:
    """An ONNX Runtime session of an export: (B, 3, H, W) torch tensor -> (B, D) torch tensor.

    ``threads`` intra-op threads, one inter-op thread, sequential execution: the graph is a chain,
    so parallel execution only adds a second pool competing for the same cores. The intra-op
    threads sleep rather than spin while they wait for work unless ``spinning``: on a 2-core VM
    that other jobs kept busy (load 6-8), a 2-thread session spinning used 18.7-22.4 CPU ms per
    image against 12.8-15.8 without, and ran 1.2-1.7x slower (benchmarks/README.md, "Inference
    engines"); one thread has no pool to spin. A session is safe to run from several threads at
    once (a server's lanes).
    """

    def __init__(self, path: Path, threads: int, spinning: bool = False) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        self.threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._input = self.session.get_inputs()[0].name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        # ONNX Runtime reads NCHW: a channels-last batch is copied to it (0.1 ms an image) by numpy, not
        # torch: a torch copy wakes torch's OpenMP pool, whose threads then spin beside ONNX Runtime's
        # and took 30 % of its rate at 2 threads x batch 1 (benchmarks/README.md, "Inference engines").
        arr = np.ascontiguousarray(x.detach().cpu().float().numpy())
        return torch.from_numpy(self.session.run(None, {self._input: arr})[0])


_RUNNERS: dict[str, Callable[[Path, int], Callable[[torch.Tensor], torch.Tensor]]] = {
    "onnxruntime": OnnxRuntimeRunner}


def engine_runner(engine: str, path: Path, threads: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """A runner of the export ``path`` on ``engine`` with ``threads`` threads."""
    try:
        return _RUNNERS[engine](path, threads)
    except ImportError as exc:
        raise EngineUnusable(f"engine {engine!r} is not installed: pip install 'dahash[{EXPORT_ENGINES[engine]}]'") from exc
    except Exception as exc:  # noqa: BLE001 - each engine raises its own types on a missing or damaged file
        reason = (str(exc).strip().splitlines() or [""])[0][:200]
        raise EngineUnusable(f"{path}: {engine} cannot load the ONNX export ({type(exc).__name__}: {reason})") from exc


def check_engine(engine: str, model: nn.Module, path: Path, crop: int) -> float:
    """The largest feature difference between ``engine`` on the export ``path`` and torch's ``model``
    on a fixed check batch, relative to the largest torch feature; recorded in the export's
    sidecar and read back from it on the next call."""
    sidecar = path.with_suffix(".json")
    meta = _read_sidecar(sidecar) or {}
    key = f"{engine} {_version(engine)}"
    if key in meta.get("checks", {}):
        return float(meta["checks"][key])
    # Pixels normalised by the backbone's mean and std lie in about [-2.2, 2.6]: uniform in [-1, 1].
    x = torch.rand(_CHECK_BATCH, 3, crop, crop, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        ref = model(x).float()
    got = engine_runner(engine, path, 1)(x)
    if got.shape != ref.shape:
        raise EngineUnusable(f"engine {engine!r} returned features of shape {tuple(got.shape)}, "
                             f"expected {tuple(ref.shape)}")
    rel = float((got - ref).abs().max() / ref.abs().max().clamp_min(1e-12))
    meta.setdefault("checks", {})[key] = rel
    try:
        write_json(sidecar, meta)
    except OSError:
        pass  # the check is only saved time: an unwritable cache computes it again next time
    return rel


def _version(engine: str) -> str:
    module = __import__(engine)
    return str(getattr(module, "__version__", "?"))
