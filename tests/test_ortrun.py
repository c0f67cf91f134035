"""training.ortrun: frozen modules through ONNX Runtime on the CPU, eager whenever that is not exact."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

import zoo
from training.ortrun import cpu_runner


class NotExportable(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(np.tanh(x.numpy()))  # leaves the graph: the exporter cannot trace it


def test_a_model_runs_in_onnxruntime_with_eager_numbers():
    model = zoo.create_model("dscnn", num_classes=5).eval()
    x = 0.1 * torch.randn(3, 16000, generator=torch.Generator().manual_seed(0))
    run, how = cpu_runner(model, x)
    assert how == "onnxruntime"
    y = 0.1 * torch.randn(5, 16000, generator=torch.Generator().manual_seed(1))  # another batch size
    with torch.no_grad():
        np.testing.assert_allclose(run(y), model(y).numpy(), atol=1e-3)


def test_a_module_that_does_not_export_runs_eager():
    x = torch.randn(4, 8)
    run, how = cpu_runner(NotExportable(), x)
    assert how.startswith("eager:")
    np.testing.assert_allclose(run(x), np.tanh(x.numpy()), rtol=1e-6)
