import os

import pytest
import torch

os.environ.setdefault("TQDM_DISABLE", "1")


@pytest.fixture(scope="session")
def digits_task():
    from trustkit.data import load_digits

    return load_digits(seed=0)


@pytest.fixture(scope="session")
def adult_task():
    from trustkit.data import load_adult

    return load_adult(seed=0)


@pytest.fixture(scope="session")
def compas_task():
    from trustkit.data import load_compas

    return load_compas(seed=0)


@pytest.fixture(scope="session")
def trained_digits(digits_task):
    """A small CNN trained on digits for a few epochs (about 3 s on 2 cores)."""
    from trustkit.train import Trainer

    trainer = Trainer(model="cnn", epochs=8, lr=3e-3, seed=0, progress=False)
    record = trainer.fit(digits_task)
    model = trainer.model_.eval()
    assert record.test["accuracy"] > 0.8
    return model


@pytest.fixture(scope="session")
def trained_compas(compas_task):
    from trustkit.train import Trainer

    trainer = Trainer(model="mlp", epochs=10, seed=0, progress=False)
    trainer.fit(compas_task)
    return trainer.model_.eval()


_THREADS = int(os.environ.get("TRUSTKIT_TEST_THREADS", "2"))


@pytest.fixture(autouse=True)
def _torch_threads():
    torch.set_num_threads(_THREADS)
    yield
