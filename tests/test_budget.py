"""Budget validation and the meter's measurements."""

import time

import numpy as np
import pytest
import torch

from trustkit.budget import Budget, Meter, count_flops, count_params, meta_copy


@pytest.mark.parametrize("field", ["time_s", "memory_mb", "flops"])
@pytest.mark.parametrize("value", [0, -1, float("nan")])
def test_non_positive_budget_is_an_error(field, value):
    with pytest.raises(ValueError, match=f"Budget.{field} must be a number > 0"):
        Budget(**{field: value})


def test_budget_types_are_checked():
    with pytest.raises(TypeError, match="Budget.time_s must be a number"):
        Budget(time_s="10")
    with pytest.raises(TypeError, match="Budget.max_params must be an integer"):
        Budget(max_params=10.5)
    with pytest.raises(ValueError, match="Budget.max_params must be an integer > 0"):
        Budget(max_params=0)
    with pytest.raises(TypeError):
        Budget(10)  # keyword-only


def test_budget_or_takes_the_tighter_limit():
    b = Budget(time_s=10, flops=5e9) | Budget(time_s=20, memory_mb=512)
    assert b == Budget(time_s=10, flops=5e9, memory_mb=512)
    assert Budget().is_unlimited and not b.is_unlimited
    assert Budget(time_s=10, flops=100).scaled(0.5) == Budget(time_s=5, flops=50)


def test_meter_measures_time():
    with Meter() as m:
        time.sleep(0.2)
    assert 0.19 <= m.usage.time_s < 1.0


def test_meter_sees_a_large_allocation():
    with Meter(sample_interval_s=0.002) as m:
        block = np.ones(300 * 1024 * 1024 // 8)  # 300 MB, touched
        block += 1
        m.sample()
        del block
    assert m.usage.peak_memory_mb >= 250
    assert m.usage.peak_rss_mb >= m.usage.peak_memory_mb


def test_flops_of_a_linear_layer_have_the_closed_form():
    lin = torch.nn.Linear(30, 20, bias=False)
    x = torch.randn(8, 30)
    assert count_flops(lambda: lin(x)) == 2 * 8 * 30 * 20
    # forward + backward (grad wrt weight; the input needs no grad) = 2 matmuls
    assert count_flops(lambda: lin(x).sum().backward()) == 2 * (2 * 8 * 30 * 20)


def test_meta_copy_counts_the_same_flops_without_compute():
    model = torch.nn.Sequential(torch.nn.Linear(10, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    real = count_flops(lambda: model(torch.randn(4, 10)).sum().backward())
    mm = meta_copy(model)
    meta = count_flops(lambda: mm(torch.empty(4, 10, device="meta")).sum().backward())
    assert real == meta > 0
    assert next(model.parameters()).device.type == "cpu"


def test_count_params():
    assert count_params(torch.nn.Linear(3, 2)) == 8


def test_step_cost_counts_saved_activations():
    from trustkit.budget import step_cost

    lin = torch.nn.Linear(30, 20)
    x = torch.randn(8, 30, device="meta")
    mm = meta_copy(lin)
    c = step_cost(lambda: torch.relu(mm(x)).sum().backward())
    # the linear layer saves its input (8x30); relu saves its output (8x20); float32
    assert c.saved_bytes >= 4 * (8 * 30 + 8 * 20)
    assert c.flops == 2 * (2 * 8 * 30 * 20)
