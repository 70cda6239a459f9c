"""Replicas trained as one batched model return what separate fits return."""

import pytest
import torch

from trustkit.data import load_compas, load_german
from trustkit.train import AdversarialLoss, CrossEntropy, FairnessPenalty, ReplicaTrainer, Trainer

# the batched products add in another order than one model's: agreement within float32 rounding
# accumulated over a few hundred Adam steps; a replica trained on another seed's batches or with
# another λ differs by more than 1e-2
TOL = dict(rtol=1e-3, atol=1e-4)


def _separate(task, seed, **kw):
    tr = Trainer(seed=seed, progress=False, **kw)
    return tr.fit(task), tr.model_


def _same_run(rec, model, ref_rec, ref_model):
    assert rec.seed == ref_rec.seed and rec.completed_epochs == ref_rec.completed_epochs
    for p, q in zip(model.parameters(), ref_model.parameters()):
        torch.testing.assert_close(p, q, **TOL)
    for e, f in zip(rec.epochs, ref_rec.epochs):
        assert e.train_loss == pytest.approx(f.train_loss, rel=1e-3, abs=1e-4)
        assert e.val["accuracy"] == pytest.approx(f.val["accuracy"], abs=0.003)  # a row near 0.5 may flip
    for k, v in ref_rec.test.items():
        assert rec.test[k] == pytest.approx(v, rel=1e-2, abs=0.003), k
    assert {k: v for k, v in rec.config.items() if k != "replicas"} == ref_rec.config


def test_each_replica_matches_a_separate_fit_with_its_seed():
    task = load_german(seed=0)
    kw = dict(model_kwargs={"hidden": 16}, epochs=3, batch_size=64, lr=3e-3)
    rt = ReplicaTrainer(seeds=[0, 1, 2], progress=False, **kw)
    records = rt.fit(task)
    for r, seed in enumerate([0, 1, 2]):
        _same_run(records[r], rt.models_[r], *_separate(task, seed, **kw))
    assert records[0].usage["replicas"] == 3 and records[0].usage["replica_job_s"] > 0
    # the replicas really differ (different initialisation and batch order)
    assert not torch.allclose(next(rt.models_[0].parameters()), next(rt.models_[1].parameters()), atol=1e-2)


def test_replicas_with_their_own_split_and_their_own_lambda_match_separate_fits():
    seeds, lams = [0, 1, 2], [0.0, 1.0, 4.0]
    tasks = [load_compas(seed=s) for s in seeds]
    terms = [CrossEntropy(), FairnessPenalty(surrogate="dp")]
    kw = dict(model_kwargs={"hidden": 16}, epochs=2, batch_size=128, terms=terms)
    rt = ReplicaTrainer(seeds=seeds, weights=[{"fair": lam} for lam in lams], progress=False, **kw)
    records = rt.fit(tasks)
    for r in range(3):
        _same_run(records[r], rt.models_[r], *_separate(tasks[r], seeds[r], weights={"fair": lams[r]}, **kw))
    assert [rec.epochs[-1].weights["fair"] for rec in records] == lams


def test_a_replica_that_stops_early_leaves_the_others_as_they_were():
    task = load_german(seed=0)
    kw = dict(model_kwargs={"hidden": 8}, batch_size=64)
    short = ReplicaTrainer(seeds=[0, 1], epochs=[1, 3], progress=False, **kw)
    full = ReplicaTrainer(seeds=[0, 1], epochs=[3, 3], progress=False, **kw)
    rs, rf = short.fit(task), full.fit(task)
    assert [r.completed_epochs for r in rs] == [1, 3]
    _same_run(rs[0], short.models_[0], *_separate(task, 0, epochs=1, **kw))
    for p, q in zip(short.models_[1].parameters(), full.models_[1].parameters()):
        assert torch.equal(p, q)  # the same computation repeated
    assert rs[1].test == rf[1].test


def test_what_replicas_cannot_train_is_refused_with_the_way_out():
    task = load_german(seed=0)
    class Entropy:  # a term of the user's own: the trainer knows nothing of how to batch it
        name = "entropy"

        def __call__(self, model, batch, logits):
            return -(logits.softmax(1) * logits.log_softmax(1)).sum(1).mean()

    with pytest.raises(ValueError, match="one at a time with Trainer"):
        ReplicaTrainer(seeds=[0, 1], terms=[CrossEntropy(), Entropy()])
    with pytest.raises(ValueError, match="one per replica"):
        ReplicaTrainer(seeds=[0, 1], epochs=[1, 2, 3])
    with pytest.raises(TypeError, match="seeds must be a non-empty sequence"):
        ReplicaTrainer(seeds=3)
    with pytest.raises(ValueError, match="same number of rows"):
        ReplicaTrainer(seeds=[0, 1], epochs=1, progress=False).fit([task, load_german(seed=1, val_size=0.3)])


def test_adversarial_replicas_match_separate_fits_each_with_its_own_random_starts():
    task = load_compas(seed=0)
    kw = dict(model_kwargs={"hidden": 16}, epochs=2, batch_size=128, weights={"rob": 1.0})

    def terms(seed):
        return [CrossEntropy(), AdversarialLoss(eps=0.1, steps=2, seed=seed)]

    rt = ReplicaTrainer(seeds=[0, 1], terms=[terms(0), terms(1)], progress=False, **kw)
    records = rt.fit(task)
    for r in range(2):
        _same_run(records[r], rt.models_[r], *_separate(task, r, terms=terms(r), **kw))
    with pytest.raises(ValueError, match="same kinds with the same settings"):
        ReplicaTrainer(seeds=[0, 1], terms=[terms(0), [CrossEntropy(), AdversarialLoss(eps=0.2, seed=1)]])


@pytest.mark.parametrize("depth", [1, 3])
def test_the_grouped_mlp_forward_computes_what_vmap_computes(depth):
    import copy

    from torch.func import functional_call, stack_module_state, vmap

    from trustkit.models import MLP, SmallCNN
    from trustkit.train._replicas import _grouped_forward

    models = [MLP(in_features=7, n_classes=3, hidden=5, depth=depth) for _ in range(4)]
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")
    x = torch.randn(4, 9, 7, generator=torch.Generator().manual_seed(0))
    grouped = _grouped_forward(base)
    ref = vmap(lambda p, b, xi: functional_call(base, (p, b), (xi,)))(params, buffers, x)
    torch.testing.assert_close(grouped(params, buffers, x), ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ref[2], models[2](x[2]), rtol=1e-5, atol=1e-6)
    assert _grouped_forward(copy.deepcopy(SmallCNN(in_channels=1, n_classes=10)).to("meta")) is None
