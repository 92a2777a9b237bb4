"""The fused inference copy of EfficientNet-Lite: same features, traced on the CPU to the same bits,
run in chunks of CPU_CHUNK images there, rebuilt when the weights change."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dahash.errors import ConfigError
from dahash.images.backbones import (
    CPU_CHUNK,
    RANDOM_WEIGHTS,
    Backbone,
    InChunks,
    inference_model,
    load_backbone,
    traced_for_cpu,
)


def _lite() -> Backbone:
    torch.manual_seed(0)
    backbone = load_backbone("efficientnet_lite0", RANDOM_WEIGHTS)
    model = backbone.model
    # Non-trivial BatchNorm statistics and affine parameters, so that folding them is tested.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    model.eval()
    return backbone


def test_fused_copy_matches_the_model_and_has_no_batchnorm() -> None:
    backbone = _lite()
    model = backbone.model
    fused = inference_model(model)
    assert fused is not model
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    x = torch.randn(2, 3, 224, 224).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        ref, out = model(x), fused(x)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max()))


def test_on_the_cpu_the_inference_module_is_the_fused_copy_traced_to_the_same_bits() -> None:
    backbone = _lite()
    net = backbone.inference()
    assert isinstance(net, InChunks) and net.chunk == CPU_CHUNK
    traced = net.module
    assert isinstance(traced, torch.jit.ScriptModule)
    assert backbone.inference() is net  # reused while the weights are unchanged
    fused = inference_model(backbone.model)
    torch.manual_seed(1)
    with torch.no_grad():
        # Traced at batch 1; other batch sizes and layouts run the same kernels. Several calls,
        # because TorchScript's profiling executor optimises the graph after the first ones.
        for batch in (1, 3, 16, 1, 3, 2):
            x = torch.randn(batch, 3, 224, 224)
            if batch != 2:
                x = x.contiguous(memory_format=torch.channels_last)
            assert torch.equal(traced(x), fused(x)), batch
        # Run in chunks: a batch's rows are those of its chunks run alone, the last one short.
        x = torch.randn(2 * CPU_CHUNK + 1, 3, 224, 224).contiguous(memory_format=torch.channels_last)
        chunks = [fused(x[i:i + CPU_CHUNK]) for i in range(0, len(x), CPU_CHUNK)]
        assert torch.equal(net(x), torch.cat(chunks))


def test_in_chunks_splits_only_batches_larger_than_a_chunk() -> None:
    calls: list[int] = []

    class Rows(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            calls.append(len(x))
            return x * 2

    x = torch.arange(7.0).view(7, 1)
    assert torch.equal(InChunks(Rows(), 3)(x), x * 2) and calls == [3, 3, 1]
    calls.clear()
    assert torch.equal(InChunks(Rows(), 7)(x), x * 2) and calls == [7]
    with pytest.raises(ConfigError, match="chunk must be a positive integer, got 0"):
        InChunks(Rows(), 0)


def test_a_model_off_the_cpu_is_not_traced() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten()).to("meta")
    assert traced_for_cpu(model, 8) is model


def test_fused_copy_is_rebuilt_after_training_changes_the_weights() -> None:
    backbone = _lite()
    model = backbone.model
    fused = backbone.inference()
    params = [p for p in model.parameters()]
    for p in params:
        p.grad = torch.full_like(p, 0.01)
    # The fused SGD kernel does not bump Tensor._version: the cache must still notice.
    torch.optim.SGD(params, lr=1.0, fused=True).step()
    refreshed = backbone.inference()
    assert refreshed is not fused
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(refreshed(x), model(x), rtol=1e-4, atol=1e-4 * float(model(x).abs().max()))


def test_a_pinned_copy_is_kept_without_checking_the_weights() -> None:
    backbone = _lite()
    backbone.pin_inference()
    pinned = backbone.inference()
    assert backbone.inference() is pinned
    with torch.no_grad():
        next(backbone.model.parameters()).add_(1.0)
    assert backbone.inference() is pinned  # the caller promised nothing trains the model any more


def test_other_models_are_returned_as_they_are() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    assert inference_model(model) is model
