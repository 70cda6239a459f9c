import copy

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from trustkit.budget import count_flops
from trustkit.compress import (
    DistillationLoss, GroupDropConstraint, GroupLoss, attack_surrogate, compression_impact,
    constrained_finetune, distill, fake_quantize_weights, finetune, footprint, inference_cost, model_bytes,
    prune_structured, prune_unstructured, quantize, weight_bytes,
)
from trustkit.data import Split, from_frame
from trustkit.metrics import adversarial_accuracy
from trustkit.models import capped_kwargs, make_model
from trustkit.train import Batch


def _same(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def _weights(model):
    return [m.weight for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


# -- pruning ----------------------------------------------------------------------------------
@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.8, 0.95])
def test_global_unstructured_pruning_zeroes_the_asked_share_of_weights(sparsity):
    dense = make_model("mlp", input_shape=(30,), n_classes=3, seed=1)
    keep = copy.deepcopy(dense)
    c = prune_unstructured(dense, sparsity=sparsity)
    n = sum(w.numel() for w in _weights(c.model))
    zeros = sum(int((w == 0).sum()) for w in _weights(c.model))
    assert zeros == round(sparsity * n)  # torch.nn.utils.prune rounds the amount to a count
    # the smallest magnitudes went: every surviving weight is at least as large as every removed one
    old = torch.cat([w.detach().flatten() for w in _weights(dense)])
    new = torch.cat([w.detach().flatten() for w in _weights(c.model)])
    if 0 < zeros < n:
        assert old[new == 0].abs().max() <= old[new != 0].abs().min()
    assert _same(dense, keep)  # the original is never changed
    assert c.after["bytes"] == pytest.approx(c.before["bytes"], rel=0.01) and not c.saves_memory


def test_layer_scope_prunes_each_layer_by_the_same_share_and_global_does_not():
    dense = make_model("mlp", input_shape=(30,), n_classes=2, seed=0)
    with torch.no_grad():
        dense.head.weight.mul_(100.0)  # the head's weights are all larger than the first layer's
    per_layer = prune_unstructured(dense, sparsity=0.5, scope="layer")
    for w in _weights(per_layer.model):
        assert int((w == 0).sum()) == round(0.5 * w.numel())
    glob = prune_unstructured(dense, sparsity=0.5, scope="global")
    assert int((glob.model.head.weight == 0).sum()) == 0  # global ranking spares the large head


@pytest.mark.parametrize("bad,err", [(1.0, ValueError), (-0.1, ValueError), ("0.5", TypeError), (True, TypeError)])
def test_pruning_refuses_a_sparsity_outside_zero_to_one(bad, err):
    dense = make_model("mlp", input_shape=(5,), n_classes=2)
    for fn in (lambda: prune_unstructured(dense, sparsity=bad), lambda: prune_structured(dense, sparsity=bad, input_shape=(5,))):
        with pytest.raises(err, match="sparsity"):
            fn()
    with pytest.raises(ValueError, match="scope"):
        prune_unstructured(dense, sparsity=0.5, scope="local")


def test_structured_pruning_removes_the_weakest_neurons_and_gives_a_smaller_dense_model():
    dense = make_model("mlp", input_shape=(12,), n_classes=2, hidden=20, seed=0)
    with torch.no_grad():  # planted: neurons 10..19 are dead (no inputs, no bias): removing them changes nothing
        dense.features[0].weight[10:] = 0.0
        dense.features[0].bias[10:] = 0.0
        dense.features[0].weight[:10] += 0.5 * torch.sign(dense.features[0].weight[:10])
    c = prune_structured(dense, sparsity=0.5, input_shape=(12,))
    assert isinstance(c.model.features[0], nn.Linear) and c.model.features[0].out_features == 10
    assert c.model.head.in_features == 10 and c.model.head.out_features == 2
    x = torch.randn(64, 12)
    torch.testing.assert_close(c.model(x), dense(x))  # the live neurons were kept, untouched
    assert c.after["params"] == 12 * 10 + 10 + 10 * 2 + 2
    removed = c.before["params"] - c.after["params"]
    assert c.before["bytes"] - c.after["bytes"] == pytest.approx(4 * removed, rel=0.1) and c.saves_memory
    assert count_flops(lambda: c.model(x)) < 0.55 * count_flops(lambda: dense(x))


def test_structured_pruning_shrinks_a_cnn_and_keeps_its_outputs_shape():
    dense = make_model("cnn", input_shape=(1, 28, 28), n_classes=10, seed=0)
    c = prune_structured(dense, sparsity=0.5, input_shape=(1, 28, 28))
    convs = [m for m in c.model.modules() if isinstance(m, nn.Conv2d)]
    assert [m.out_channels for m in convs] == [8, 16]
    x = torch.rand(4, 1, 28, 28)
    assert c.model(x).shape == (4, 10)
    assert c.param_ratio < 0.35  # halving the channels of both sides of a layer quarters it
    assert count_flops(lambda: c.model(x)) < 0.4 * count_flops(lambda: dense(x))


# -- quantisation -----------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["auto", "torchao", "torch.ao"])
def test_int8_dynamic_stores_about_a_quarter_of_the_float_bytes(backend):
    from trustkit.compress._quantize import cpu_has_int8_dot

    if backend == "torchao" and not cpu_has_int8_dot():
        pytest.skip("torchao's int8 kernels are inexact without VNNI (quantize warns; 'auto' takes torch.ao)")
    dense = make_model("mlp", input_shape=(256,), n_classes=2, hidden=512, seed=0)
    keep = copy.deepcopy(dense)
    q = quantize(dense, scheme="int8_dynamic", backend=backend)
    assert _same(dense, keep)
    assert 0.24 <= q.bytes_ratio <= 0.30, q.bytes_ratio
    x = torch.randn(128, 256)
    ref = dense(x)
    assert (q.model(x) - ref).abs().max() < 0.05 * ref.abs().max()
    assert (q.model(x).argmax(1) == ref.argmax(1)).float().mean() > 0.95
    assert not q.differentiable and q.after["params"] == q.before["params"]


def test_int8_static_quantises_a_cnn_with_calibration(trained_digits, digits_task):
    q = quantize(trained_digits, scheme="int8_static", calibration=digits_task.train)
    assert q.bytes_ratio < 0.35
    x = torch.as_tensor(digits_task.test.X)
    agree = (q.model(x).argmax(1) == trained_digits(x).argmax(1)).float().mean()
    assert agree > 0.97
    assert q.settings["n_calibration"] == min(2048, len(digits_task.train))
    with pytest.raises(ValueError, match="calibration"):
        quantize(trained_digits, scheme="int8_static")


def test_four_bit_rounds_harder_than_eight_bit_and_the_simulated_one_saves_nothing():
    dense = make_model("mlp", input_shape=(64,), n_classes=4, hidden=128, seed=0)
    x = torch.randn(256, 64)
    with torch.no_grad():
        ref = dense(x)
        err = {s: float((quantize(dense, scheme=s).model(x) - ref).abs().mean())
               for s in ("int8_dynamic", "int4_weight", "int4_simulated")}
    # 16 levels instead of 256: the rounding error grows several-fold (about 9x with torchao's int8 weights and
    # activations on a CPU with VNNI, 4.4x with PyTorch's dynamic int8, whose per-tensor activation scale adds error)
    assert err["int4_weight"] > 3 * err["int8_dynamic"] and err["int4_simulated"] > 3 * err["int8_dynamic"], err
    sim = quantize(dense, scheme="int4_simulated")
    assert sim.bytes_ratio == pytest.approx(1.0, abs=0.01) and not sim.saves_memory and sim.differentiable
    for w in _weights(sim.model):
        assert max(len(torch.unique(row)) for row in w) <= 16
    real = quantize(dense, scheme="int4_weight")
    int8 = quantize(dense, scheme="int8_dynamic")
    assert real.after["bytes"] == pytest.approx(int8.after["bytes"], rel=0.1)  # 4-bit values stored one per byte


def test_auto_backend_follows_the_int8_dot_instruction(monkeypatch):
    from trustkit.compress._quantize import cpu_has_int8_dot

    dense = make_model("mlp", input_shape=(16,), n_classes=2, hidden=32, seed=0)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # what a CPU without VNNI offers
    assert not cpu_has_int8_dot()
    assert quantize(dense, scheme="int8_dynamic").settings["backend"] == "torch.ao"
    with pytest.warns(UserWarning, match="without an int8 dot-product instruction"):
        quantize(dense, scheme="int8_dynamic", backend="torchao")
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    expected = "torchao" if cpu_has_int8_dot() else "torch.ao"
    assert quantize(dense, scheme="int8_dynamic").settings["backend"] == expected


def test_quantize_refuses_unknown_schemes_and_backends_and_bad_group_sizes():
    dense = make_model("mlp", input_shape=(10,), n_classes=2)
    with pytest.raises(ValueError, match="scheme"):
        quantize(dense, scheme="int2")
    with pytest.raises(ValueError, match="backend"):
        quantize(dense, scheme="int8_dynamic", backend="tensorrt")
    with pytest.raises(ValueError, match="group_size"):
        quantize(dense, scheme="int4_weight", group_size=3)


def test_fake_quantisation_uses_symmetric_levels_per_output_channel():
    lin = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.7, -0.35, 0.1, 0.0]]))
    fake_quantize_weights(lin, bits=4)  # scale 0.1: 0.7/7 ; levels -8..7
    torch.testing.assert_close(lin.weight, torch.tensor([[0.7, -0.4, 0.1, 0.0]]))


# -- measurement ------------------------------------------------------------------------------
def test_inference_cost_reports_latency_throughput_and_activation_memory():
    model = nn.Sequential(nn.Linear(10, 1000), nn.ReLU(), nn.Linear(1000, 2))
    cost = inference_cost(model, (10,), batch_sizes=(1, 64), min_run_time=0.02, threads=1)
    assert cost["threads"] == 1 and cost["model_bytes"] == model_bytes(model)
    for b in (1, 64):
        assert 0 < cost[f"latency_ms@{b}"] <= cost[f"latency_p95_ms@{b}"]
        assert cost[f"throughput@{b}"] == pytest.approx(b / cost[f"latency_ms@{b}"] * 1e3)
    # the largest layer input + output: the ReLU's (64×1000 in, 64×1000 out) float32
    assert cost["activation_mb@64"] * 2**20 == 64 * 2000 * 4
    with pytest.raises(ValueError, match="batch_sizes"):
        inference_cost(model, (10,), batch_sizes=(0,))


def test_inference_latency_grows_with_the_work_of_a_call_and_threads_come_back():
    before = torch.get_num_threads()
    threads = 2 if before == 1 else 1
    small = nn.Sequential(nn.Linear(10, 4), nn.ReLU(), nn.Linear(4, 2))
    big = nn.Sequential(nn.Linear(10, 2048), nn.ReLU(), nn.Linear(2048, 2048), nn.ReLU(), nn.Linear(2048, 2))
    lat = {name: inference_cost(m, (10,), batch_sizes=(256,), min_run_time=0.02, threads=threads)["latency_ms@256"]
           for name, m in (("small", small), ("big", big))}
    # the big model does ~2,000 times the multiplications of the small one: far more than timing noise
    assert lat["big"] > 10 * lat["small"]
    assert torch.get_num_threads() == before


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal of a missing GPU")
def test_compression_refuses_a_device_that_is_not_there(compas_task):
    model = make_model("mlp", input_shape=(5,), n_classes=2)
    with pytest.raises(ValueError, match="device"):
        inference_cost(model, (5,), device="cuda")
    with pytest.raises(ValueError, match="device"):
        finetune(model, compas_task, steps=1, device="cuda")


def test_model_bytes_follow_the_parameter_count():
    small, big = nn.Linear(100, 10), nn.Linear(100, 1000)
    assert model_bytes(big) - model_bytes(small) == pytest.approx(4 * (101 * 990), rel=0.01)
    assert footprint(small)["params"] == 1010


def _planted_split():
    X = np.array([[1.0], [-1.0], [2.0], [-2.0], [0.5], [-0.5]], dtype=np.float32)
    y = np.array([1, 0, 1, 0, 1, 0])
    a = np.array([0, 0, 0, 1, 1, 1])
    return Split(X=X, y=y, a=a, index=np.arange(10, 16))


def _threshold_model(t: float) -> nn.Module:
    """Predicts class 1 when x > t."""
    m = nn.Linear(1, 2)
    with torch.no_grad():
        m.weight.copy_(torch.tensor([[0.0], [1.0]]))
        m.bias.copy_(torch.tensor([0.0, -t]))
    return m


def test_compression_impact_per_group_changes_agreement_and_exemplars():
    s = _planted_split()
    dense, compressed = _threshold_model(0.0), _threshold_model(0.75)  # compressed misses x = 0.5
    imp = compression_impact(dense, compressed, s, group_names=("young", "old"))
    assert imp.accuracy_dense == 1.0 and imp.accuracy_compressed == pytest.approx(5 / 6)
    assert imp.exemplars.tolist() == [14]  # split.index of the only disagreement
    g = imp.per_group.set_index("group")
    assert g.loc["young", "acc_change"] == 0.0 and g.loc["old", "acc_change"] == pytest.approx(-1 / 3)
    assert g.loc["old", "agreement"] == pytest.approx(2 / 3) and imp.worst_group_change == pytest.approx(-1 / 3)
    rec = imp.to_dict()
    assert rec["acc_change[old]"] == pytest.approx(-1 / 3) and rec["n_exemplars"] == 1
    assert rec["group_acc_gap_dense"] == 0.0 and rec["group_acc_gap"] == pytest.approx(1 / 3)
    by_label = compression_impact(dense, compressed, s, groups="label").per_group.set_index("group")
    assert by_label.loc[1, "acc_change"] == pytest.approx(-1 / 3) and by_label.loc[0, "acc_change"] == 0.0
    with pytest.raises(ValueError, match="sensitive"):
        compression_impact(dense, compressed, s.replace(a=None))


def test_attack_surrogate_scores_the_model_and_steers_with_the_reference():
    torch.manual_seed(0)
    model, reference = nn.Linear(3, 2), nn.Linear(3, 2)
    s = attack_surrogate(model, reference)
    x = torch.randn(5, 3, requires_grad=True)
    torch.testing.assert_close(s(x), model(x))
    s(x)[:, 1].sum().backward()
    torch.testing.assert_close(x.grad, (reference.weight[1]).expand(5, 3).detach())


def test_quantised_models_are_attacked_through_the_dense_gradients(trained_compas, compas_task):
    q = quantize(trained_compas, scheme="int8_dynamic", backend="torch.ao")
    X, y = compas_task.test.X[:400], compas_task.test.y[:400]
    with pytest.raises(TypeError, match="attack_surrogate"):
        adversarial_accuracy(q.model, X, y, 0.3, attack="pgd", steps=3)
    surrogate = attack_surrogate(q.model, trained_compas)
    clean = float((q.model(torch.as_tensor(X)).argmax(1).numpy() == y).mean())
    robust = adversarial_accuracy(surrogate, X, y, 0.3, attack="pgd", steps=5)
    assert robust < clean - 0.05


# -- fine-tuning, distillation, capacity ------------------------------------------------------
def test_finetuning_a_pruned_model_keeps_its_zeros_and_moves_the_rest(compas_task, trained_compas):
    pruned = prune_unstructured(trained_compas, sparsity=0.7)
    tuned, record = finetune(pruned, compas_task, steps=7, lr=1e-2)
    assert record.epochs[0].steps == 7 and tuned.settings["finetune_steps"] == 7
    for before, after in zip(_weights(pruned.model), _weights(tuned.model)):
        assert torch.equal(before == 0, after == 0)  # same zeros, no more and no fewer
    assert not _same(pruned.model, tuned.model)
    assert not hasattr(tuned.model.features[0], "weight_orig")  # a plain model again
    q = quantize(trained_compas, scheme="int8_dynamic", backend="torch.ao")
    with pytest.raises(ValueError, match="no gradients"):
        finetune(q, compas_task, steps=2)


def test_distillation_loss_is_the_temperature_scaled_kl_divergence():
    torch.manual_seed(0)
    teacher, x = nn.Linear(3, 4), torch.randn(6, 3)
    student_logits = torch.randn(6, 4)
    T = 3.0
    b = Batch(x=x, y=torch.zeros(6, dtype=torch.long), a=None, idx=torch.arange(6))
    got = float(DistillationLoss(teacher=teacher, temperature=T)(None, b, student_logits))
    pt = torch.softmax(teacher(x) / T, 1).detach().double().numpy()
    ps = torch.softmax(student_logits / T, 1).double().numpy()
    want = T * T * float(np.mean(np.sum(pt * (np.log(pt) - np.log(ps)), axis=1)))
    assert got == pytest.approx(want, rel=1e-5)


def _planted_task(n: int, seed: int, *, noise: float = 0.0, minority_flip: bool = False):
    """Labels from a fixed linear rule on 10 features; optional label noise; a sensitive group column."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 10))
    w = np.linspace(-1, 1, 10)
    g = (rng.random(n) < 0.2).astype(int)
    score = X @ w
    if minority_flip:  # the minority follows the opposite rule on the first feature
        score = score + np.where(g == 1, -4.0 * X[:, 0], 0.0)
    y = (score > 0).astype(int)
    flip = rng.random(n) < noise
    y = np.where(flip, 1 - y, y)
    df = pd.DataFrame(X, columns=[f"x{i}" for i in range(10)])
    df["group"], df["label"] = np.where(g == 1, "minority", "majority"), y
    return from_frame(df, label="label", sensitive="group", seed=seed)


def test_a_distilled_student_beats_the_same_student_trained_on_noisy_labels():
    # planted: the teacher knows the clean rule; the student's labels are 30% flipped. A small
    # training set, so the hard labels alone mislead the student more than the teacher's soft ones.
    task = _planted_task(600, seed=0, noise=0.3)
    clean = _planted_task(600, seed=0, noise=0.0)
    teacher = make_model("mlp", input_shape=task.input_shape, n_classes=2, hidden=64, seed=0)
    from trustkit.train import Trainer

    tr = Trainer(model="mlp", epochs=60, lr=1e-2, seed=0, progress=False)
    tr.fit(_planted_task(5000, seed=1))  # the teacher learns the rule from plenty of clean data
    teacher = tr.model_.eval()
    test = clean.test
    acc = {}
    for alpha in (0.0, 0.9):
        c, _ = distill(teacher, task, student_kwargs={"hidden": 8}, alpha=alpha, temperature=2.0, epochs=40, lr=1e-2, seed=0)
        acc[alpha] = float((c.model(torch.as_tensor(test.X)).argmax(1).numpy() == test.y).mean())
    assert acc[0.9] > acc[0.0] + 0.03, acc
    with pytest.raises(ValueError, match="more than the teacher"):
        distill(teacher, task, student_kwargs={"hidden": 128})


def test_capacity_cap_picks_the_widest_model_that_fits():
    for name, shape, cap in [("mlp", (100,), 3000), ("cnn", (1, 28, 28), 20000), ("mlp", (20,), 10**6)]:
        kw = capped_kwargs(name, input_shape=shape, n_classes=10, max_params=cap)
        n = sum(p.numel() for p in make_model(name, input_shape=shape, n_classes=10, **kw).parameters())
        assert n <= cap
        knob = "hidden" if name == "mlp" else "width"
        default = 64 if name == "mlp" else 16
        if kw[knob] < default:  # one unit wider would not fit
            wider = capped_kwargs(name, input_shape=shape, n_classes=10, max_params=10**9, **{knob: kw[knob] + 1})
            m = sum(p.numel() for p in make_model(name, input_shape=shape, n_classes=10, **wider).parameters())
            assert m > cap
    assert capped_kwargs("mlp", input_shape=(20,), n_classes=10, max_params=10**6)["hidden"] == 64
    with pytest.raises(ValueError, match="max_params"):
        make_model("mlp", input_shape=(100,), n_classes=2, max_params=50)
    with pytest.raises(ValueError, match="fixed size"):
        make_model("resnet18", input_shape=(3, 32, 32), n_classes=10, max_params=10**5)


# -- the constrained fine-tune ----------------------------------------------------------------
def test_group_drop_constraint_raises_the_multiplier_of_the_group_below_its_bound():
    term = GroupLoss(n_groups=2)
    cons = GroupDropConstraint(dense_accuracy=[0.9, 0.9], max_drop=0.05, dual_lr=1.0)

    class S:
        terms = {"group": term}

    cons.on_fit_start(S)
    term.last_accuracy = torch.tensor([0.88, 0.60])  # group 0 within its bound, group 1 0.25 past it
    cons.on_step_end(S, None, {})
    torch.testing.assert_close(term.multipliers, torch.tensor([0.0, 0.25]))
    term.last_accuracy = torch.tensor([0.95, float("nan")])  # absent group: no update
    cons.on_step_end(S, None, {})
    torch.testing.assert_close(term.multipliers, torch.tensor([0.0, 0.25]))


def _gated_task(n: int, seed: int):
    """A 7% minority follows another linear rule; the group is a feature, so a wide model fits both."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 10))
    w = np.linspace(-1, 1, 10)
    g = (rng.random(n) < 0.07).astype(int)
    y = (np.where(g == 1, X @ np.roll(w, 3), X @ w) > 0).astype(int)
    df = pd.DataFrame(X, columns=[f"x{i}" for i in range(10)])
    df["group"], df["label"] = np.where(g == 1, "minority", "majority"), y
    return from_frame(df, label="label", sensitive="group", seed=seed, sensitive_as_feature=True)


def test_constrained_finetune_lifts_the_group_compression_hurt_most():
    # planted: the dense model fits both rules (train accuracy ~1.0 in each group); pruned to 3
    # neurons, plain fine-tuning spends them on the majority, the constrained one on both
    task = _gated_task(4000, seed=1)
    from trustkit.train import Trainer

    tr = Trainer(model="mlp", epochs=30, lr=1e-2, seed=0, progress=False)
    tr.fit(task)
    dense = tr.model_.eval()
    pruned = prune_structured(dense, sparsity=0.95, input_shape=task.input_shape)
    plain, _ = finetune(pruned, task, epochs=3, lr=1e-2)
    cons, record, constraint = constrained_finetune(dense, pruned, task, max_drop=0.02, epochs=3, lr=1e-2, dual_lr=1.0)
    minority = task.group_names.index("minority")

    def drop(model):
        imp = compression_impact(dense, model, task.train, group_names=task.group_names)
        return -imp.per_group.set_index("group").loc["minority", "acc_change"]

    assert drop(cons.model) < drop(plain.model) - 0.03, (drop(plain.model), drop(cons.model))
    assert constraint.history[-1][minority] > constraint.history[0][minority] > 0
    assert cons.settings["mitigation"] == "group_drop_constraint" and cons.after["params"] == pruned.after["params"]
    with pytest.raises(ValueError, match="sensitive"):
        constrained_finetune(dense, pruned, task.replace(train=task.train.replace(a=None), sensitive=None), epochs=1)


def test_compressed_profile_measures_a_quantised_model_like_a_trained_one(trained_compas, compas_task):
    q = quantize(trained_compas, scheme="int8_dynamic", backend="torch.ao")
    from trustkit.compress import compressed_profile
    from trustkit.metrics import evaluate

    row = compressed_profile(q, trained_compas, compas_task, max_attack=300, pgd_steps=3, batch_sizes=(1,),
                             min_run_time=0.01)
    assert row["accuracy"] == evaluate(q.model, compas_task.test)["accuracy"]
    assert row["attack"] == "transfer" and 0 <= row["pgd@0.1"] <= row["accuracy"] + 0.05
    assert row["impact_agreement"] > 0.9 and "acc_change[African-American]" in row
    assert len(row["exemplars"]) == row["impact_n_exemplars"] and row["bytes_after"] < row["bytes_before"]
    assert row["latency_ms@1"] > 0 and row["method"] == "quantize"


def test_weight_bytes_count_stored_tensors_at_their_width():
    lin = nn.Linear(10, 3)
    assert weight_bytes(lin) == 4 * (30 + 3)
    m = make_model("mlp", input_shape=(10,), n_classes=2, hidden=32)
    dense = weight_bytes(m)
    assert dense == 4 * (10 * 32 + 32 + 32 * 2 + 2)
    q = quantize(m, scheme="int8_dynamic", backend="torch.ao")
    # int8 weights (one byte each) and float32 biases: 354 + 4 * 34 plus the per-tensor scales
    assert 354 + 4 * 34 <= q.after["weight_bytes"] <= 354 + 4 * 34 + 64
    assert q.after["bytes"] > q.before["bytes"]  # the file of a small int8 model is larger: its overhead
    assert q.saves_memory and q.weight_bytes_ratio < 0.4


def test_saves_memory_is_derived_from_the_stored_tensors(compas_task):
    m = make_model("mlp", input_shape=compas_task.input_shape, n_classes=2, hidden=32)
    assert not prune_unstructured(m, sparsity=0.8).saves_memory  # zeros stored densely
    assert prune_structured(m, sparsity=0.5, input_shape=compas_task.input_shape).saves_memory
    assert not quantize(m, scheme="int4_simulated").saves_memory  # 4-bit levels kept in float32
    assert quantize(m, scheme="int4_weight").saves_memory
