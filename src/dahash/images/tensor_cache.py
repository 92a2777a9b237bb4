"""Every training image decoded once into a uint8 tensor on the training device, and augmented there.

Fine-tuning on a GPU outruns DataLoader workers that decode, resize and augment every draw on the
CPU (761 img/s on an H100, a fraction of what the model trains at). This cache pays the decoding
and the shorter-side resize once: each image is kept as uint8 (3, H, W) with its shorter side at
``prep.resize``, about 0.26 MB at 256 x 341, 0.7 GB for Office-Caltech-10's 2,533 images.
A batch is then cut from those tensors on the device: the same crop boxes, flips and brightness
factors as :func:`~dahash.images.preprocess.train_transform` draws from the same generator, with
torch's antialiased bicubic resampling (Pillow's kernel) in place of Pillow's, rounded to uint8
levels as Pillow's output is.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from PIL import Image
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from dahash.errors import DataError
from dahash.images.loading import ImageLoadError
from dahash.images.preprocess import Preprocessing, resize_shorter, sample_train_params
from dahash.images.workers import ForkSafeLoader

__all__ = ["ImageTensorCache", "open_scanned_image"]


def open_scanned_image(path: Path, prep: Preprocessing) -> Image.Image:
    """``prep.open(path)`` of an image the training domains were scanned with; a DataError if it broke since."""
    try:
        return prep.open(path)
    except ImageLoadError as exc:
        # The domains were scanned before training: a file that breaks now changed under the run.
        raise DataError(f"{exc} (it was readable when training started)") from exc


class _Resized(Dataset):
    """Decoded images, shorter side at ``prep.resize``, as uint8 (3, H, W) tensors."""

    def __init__(self, paths: Sequence[Path], prep: Preprocessing) -> None:
        self.paths = list(paths)
        self.prep = prep

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Tensor:
        prep = self.prep
        img = resize_shorter(open_scanned_image(self.paths[i], prep), prep.resize, prep.interpolation, prep.reducing_gap)
        return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()


def _as_list(items: list[Tensor]) -> list[Tensor]:
    return items


class ImageTensorCache:
    """The images of ``paths`` decoded once (``num_workers`` processes) and kept on ``device``."""

    def __init__(self, paths: Sequence[Path], prep: Preprocessing, device: str | torch.device, *,
                 num_workers: int = 2, progress: bool = True) -> None:
        self.prep = prep
        self.device = torch.device(device)
        loader = ForkSafeLoader(_Resized(paths, prep), batch_size=32, num_workers=num_workers, collate_fn=_as_list)
        self.images: list[Tensor] = []
        with tqdm(total=len(paths), unit="img", desc="image cache", disable=not progress) as bar:
            for batch in loader:
                self.images.extend(t.to(self.device) for t in batch)
                bar.update(len(batch))
        shape = (3, 1, 1)
        self._mean = torch.tensor(prep.mean, device=self.device).view(shape)
        self._std = torch.tensor(prep.std, device=self.device).view(shape)

    @property
    def nbytes(self) -> int:
        """Bytes the cached images take on the device."""
        return sum(t.numel() for t in self.images)

    def batch(self, indices: Sequence[int], generators: Sequence[np.random.Generator] | None) -> Tensor:
        """Network inputs (B, 3, crop, crop) of images ``indices``: each augmented with parameters
        drawn from its generator as :func:`~dahash.images.preprocess.train_transform` draws them,
        or, with ``generators`` None, the eval transform's centre crop."""
        crop = self.prep.crop
        out = []
        for n, i in enumerate(indices):
            img = self.images[i]
            h, w = img.shape[1:]
            if generators is None:
                top, left = (h - crop) // 2, (w - crop) // 2
                out.append(img[:, top:top + crop, left:left + crop].float())
                continue
            p = sample_train_params((w, h), self.prep, generators[n])
            left, top, right, bottom = p.box
            window = img[None, :, top:bottom, left:right].float()
            x = F.interpolate(window, size=(crop, crop), mode="bicubic", antialias=True, align_corners=False)[0]
            x = x.round_().clamp_(0, 255)
            if p.flip:
                x = x.flip(-1)
            out.append(x.mul_(p.brightness))
        x = torch.stack(out).div_(255.0).clamp_(0.0, 1.0)
        return x.sub_(self._mean).div_(self._std)
