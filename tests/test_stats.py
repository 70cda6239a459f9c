import numpy as np
import pandas as pd
import pytest

from trustkit.stats import format_mean_std, mean_std


def test_mean_std_matches_numpy():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"d": np.repeat(["a", "b"], 5), "m": rng.random(10)})
    s = mean_std(df, by="d", metrics=["m"]).set_index("d")
    for g in ("a", "b"):
        v = df.loc[df.d == g, "m"].to_numpy()
        assert s.loc[g, "m_mean"] == pytest.approx(v.mean())
        assert s.loc[g, "m_std"] == pytest.approx(v.std(ddof=1))
        assert s.loc[g, "n"] == 5


def test_format_and_errors():
    df = pd.DataFrame({"d": ["a", "a", "b"], "m": [1.0, 2.0, 3.0]})
    out = format_mean_std(df, by="d", metrics=["m"], digits=2)
    assert out["m"].tolist() == ["1.50 ± 0.71", "3.00"]
    with pytest.raises(ValueError, match=r"columns \['x'\] are not in the results"):
        mean_std(df, by="d", metrics=["x"])
