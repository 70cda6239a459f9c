import pytest
import torch

from trustkit.models import MLP, MODELS, make_model


@pytest.mark.parametrize("name, shape", [("mlp", (12,)), ("cnn", (1, 32, 32)), ("resnet18", (3, 32, 32))])
def test_models_shapes_and_feature_head_split(name, shape):
    m = make_model(name, input_shape=shape, n_classes=3, seed=0)
    x = torch.zeros(2, *shape)
    out = m(x)
    assert out.shape == (2, 3)
    torch.testing.assert_close(m.head(m.features(x)), out)


def test_init_is_deterministic_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = make_model("cnn", input_shape=(1, 32, 32), n_classes=10, seed=5)
    after = torch.rand(1)
    assert torch.equal(before, after)
    b = make_model("cnn", input_shape=(1, 32, 32), n_classes=10, seed=5)
    c = make_model("cnn", input_shape=(1, 32, 32), n_classes=10, seed=6)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))


def test_mlp_is_two_layers():
    m = MLP(in_features=5, hidden=7)
    linears = [l for l in m.modules() if isinstance(l, torch.nn.Linear)]
    assert [(l.in_features, l.out_features) for l in linears] == [(5, 7), (7, 2)]


def test_model_errors():
    with pytest.raises(ValueError, match="unknown model 'mpl'.*Did you mean 'mlp'"):
        make_model("mpl", input_shape=(3,), n_classes=2)
    with pytest.raises(ValueError, match="model 'mlp' needs flat inputs"):
        make_model("mlp", input_shape=(1, 8, 8), n_classes=2)
    with pytest.raises(ValueError, match="needs image inputs"):
        make_model("cnn", input_shape=(8,), n_classes=2)
    assert set(MODELS) == {"mlp", "cnn", "resnet18"}
