"""CPU time per image of EfficientNet-Lite0 on one thread: torch and ONNX Runtime in fp32,
and ONNX Runtime int8 (static quantisation calibrated on source images only), with how far the
int8 features are from fp32's.

Process CPU time rather than wall time: on a machine other jobs share, it is the figure they
disturb least. Every engine runs on one thread, in the calling thread, so the CPU time is the
forward pass's own.

Usage: python benchmarks/engine_int8.py [--data-root DIR] [--source amazon] [--target webcam]
       [--calibration 64] [--rounds 3] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import machine, write_results  # noqa: E402

from dahash.experiments.tables import markdown_table  # noqa: E402
from dahash.images.backbones import InChunks, load_backbone, use_engine  # noqa: E402
from dahash.images.datasets import find_images  # noqa: E402
from dahash.images.engines import OnnxRuntimeRunner  # noqa: E402
from dahash.images.extract import image_tensor  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def per_class(root: Path, n: int) -> list[Path]:
    """About ``n`` images of a domain folder, the same number from every class."""
    classes = sorted(p for p in root.iterdir() if p.is_dir())
    k = -(-n // len(classes))
    return [p for c in classes for p in find_images(c)[:k]][:n]


def cpu_ms(net, x: torch.Tensor, images: int = 48) -> float:
    """Process CPU milliseconds per image of ``net`` on ``x`` (after one warm-up call)."""
    with torch.no_grad():
        net(x)
        start, n = time.process_time(), 0
        while n < images:
            net(x)
            n += len(x)
    return 1000 * (time.process_time() - start) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=str(REPO.parent / "shared" / "data" / "office_caltech_10"))
    parser.add_argument("--source", default="amazon", help="calibration images come from this domain only")
    parser.add_argument("--target", default="webcam", help="the int8 features are compared on this domain")
    parser.add_argument("--calibration", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    args = parser.parse_args()
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quant_pre_process,
                                          quantize_static)

    torch.set_num_threads(1)
    line = machine(torch=torch.__version__)
    print(line, flush=True)
    root = Path(args.data_root)
    with tempfile.TemporaryDirectory(prefix="dahash-int8-") as tmp:
        backbone = load_backbone()
        ort = use_engine(backbone, "onnxruntime", tmp)

        def pixels(paths: list[Path]) -> np.ndarray:
            return torch.stack([image_tensor(p, backbone) for p in paths]).contiguous().numpy()

        calibration = per_class(root / args.source, args.calibration)

        class Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self.batches = iter([{"images": pixels(calibration[i:i + 8])} for i in range(0, len(calibration), 8)])

            def get_next(self) -> dict | None:
                return next(self.batches, None)

        prepared, int8 = Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx"
        quant_pre_process(str(ort.export), str(prepared))
        quantize_static(str(prepared), str(int8), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        nets = {"torch": backbone.inference(), "onnxruntime fp32": ort.inference(threads=1),
                "onnxruntime int8": OnnxRuntimeRunner(int8, 1)}
        x = torch.from_numpy(pixels(per_class(root / args.target, 30)))
        fp32, q = nets["onnxruntime fp32"](x).numpy(), nets["onnxruntime int8"](x).numpy()
        cosine = (fp32 * q).sum(1) / np.linalg.norm(fp32, axis=1) / np.linalg.norm(q, axis=1)
        cells = {}
        for _ in range(args.rounds):
            for name, net in nets.items():
                for batch, chunked in ((1, False), (16, False), (16, True)):
                    if chunked and name == "torch":
                        continue  # torch always runs in chunks of 4
                    run = InChunks(net, 4) if chunked else net
                    key = (name, batch, chunked)
                    cells[key] = min(cells.get(key, float("inf")), cpu_ms(run, x[:batch]))
    rows = [{"engine": name, "batch": batch, "chunks_of_4": chunked, "cpu_ms_per_image": ms,
             "torch_over_engine": cells[("torch", batch, False)] / ms} for (name, batch, chunked), ms in cells.items()]
    table = markdown_table(["engine", "batch", "in chunks of 4", "CPU ms / image", "torch ÷ engine"],
                           [[r["engine"], str(r["batch"]), "yes" if r["chunks_of_4"] else "no",
                             f"{r['cpu_ms_per_image']:.1f}", f"{r['torch_over_engine']:.2f}"] for r in rows])
    text = (f"# CPU time per image on one thread, and int8\n\n{line}\n\n{table}\n"
            f"int8 against fp32 features ({len(x)} {args.target} images; calibrated on {len(calibration)} "
            f"{args.source} images): cosine similarity mean {cosine.mean():.3f}, min {cosine.min():.3f}\n")
    write_results(args.out, "engine_int8", text, rows)
    print(text)


if __name__ == "__main__":
    main()
