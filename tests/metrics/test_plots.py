"""The PNG figures: written atomically, readable, one bar per method and task."""

from pathlib import Path

import matplotlib.pyplot as plt
import pytest
from PIL import Image

from dahash.metrics import plots


def test_task_bars_draws_one_bar_per_method_and_task(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    drawn = {}
    real = plt.Axes.bar

    def spy(self, x, height, *args, **kwargs):
        drawn[kwargs.get("label")] = list(height)
        return real(self, x, height, *args, **kwargs)

    monkeypatch.setattr(plt.Axes, "bar", spy)
    scores = {"NoDA": [93.4, 95.5, 94.5], "DAH": [91.5, 85.4, 88.4]}
    path = tmp_path / "acc.png"
    plots.plot_task_bars(path, ["A→C", "A→D", "Avg"], scores, title="t")
    assert drawn == scores
    with Image.open(path) as img:
        assert img.format == "PNG" and img.width > 300
    assert [p.name for p in tmp_path.iterdir()] == ["acc.png"]  # no temporary file left behind
