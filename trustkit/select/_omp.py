"""Orthogonal Matching Pursuit: offline (the check) and online (VTruST's selection, with fixes).

Both approximate a target ``y`` (M rows: value-function components) by a sparse combination of
columns of ``X`` (one column, an *atom*, per training point). Columns are scaled to unit norm
first, as the paper's Algorithm 1 requires, and weights are refitted by least squares on the
selected columns after every change — ordinary least squares by default, or non-negative least
squares (``nonneg=True``) when only points that *help* the value function should be kept (a
negative weight means the point is selected for the harm it does, which is not what a training
subset is for).

The approximation is meaningful only when it is over-determined: with M ≤ ω (rows ≤ atoms) least
squares fits ``y`` exactly and the pursuit stops discriminating. Both functions warn with the
numbers, and report the residual and (online) the number of replacements.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.optimize import nnls

from .._validation import check_int

__all__ = ["omp", "OMPResult", "OnlineOMP"]


def _as_double(name, a) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(a) if not isinstance(a, torch.Tensor) else a).double()
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return t


def _warn_underdetermined(m: int, k: int) -> None:
    if m <= k:
        warnings.warn(
            f"the target has M={m} rows but up to {k} atoms are selected: with M <= atoms least squares "
            "fits exactly and the pursuit selects nothing meaningful; add target rows (more validation "
            "components or epochs) or select fewer atoms (e.g. per-batch atoms)",
            RuntimeWarning, stacklevel=3,
        )


def _fit(A: torch.Tensor, y: torch.Tensor, nonneg: bool) -> torch.Tensor:
    if nonneg:
        coef, _ = nnls(A.numpy(), y.numpy())
        return torch.from_numpy(coef)
    return torch.linalg.lstsq(A, y.unsqueeze(1), driver="gelsd").solution.squeeze(1)


def _nnls_gram(G: np.ndarray, b: np.ndarray, x0: np.ndarray, tol: float, max_iter: int | None = None,
               solved: bool = False) -> np.ndarray | None:
    """Non-negative least squares in Gram form, started from a feasible point.

    Minimises ``½ βᵀGβ − bᵀβ`` over ``β ≥ 0``; with ``G = AᵀA`` and ``b = Aᵀy`` this is
    ``min ‖y − Aβ‖`` over ``β ≥ 0``, the problem :func:`scipy.optimize.nnls` solves on ``A`` itself.
    Lawson and Hanson's active-set method, as scipy's, but started from ``x0 ≥ 0`` with its support
    as the passive set: after one column of ``A`` changes, the old solution with that column's weight
    set to 0 is feasible and usually a step or two from the new optimum, and each step solves a
    system of the size of the passive set instead of working on the M rows of ``A``.

    The solution is unique when ``A`` has full column rank, so it is scipy's up to rounding; it
    stops when no weight outside the passive set has a gradient ``(b − Gβ)_k`` above ``tol``. Returns
    ``None`` (the caller then uses scipy on ``A``) when a passive system is singular or not
    finite, or after ``max_iter`` passive sets (default ``3k + 10``). ``solved``: ``x0`` already
    solves the least-squares problem on its support (a swap that changed a column of weight 0),
    so the first passive system is skipped.
    """
    k = len(b)
    x = np.where(x0 > 0, x0, 0.0)
    passive = x > 0
    excluded = np.zeros(k, dtype=bool)  # entered with a non-positive weight: rounding, not an improvement
    entered = -1  # the variable the last step added to the passive set
    for _ in range(max_iter if max_iter is not None else 3 * k + 10):
        while not solved:  # the least-squares solution on the passive set, stepping back while it leaves β ≥ 0
            idx = np.flatnonzero(passive)
            if len(idx) == 0:
                x[:] = 0.0
                break
            try:
                z = np.linalg.solve(G.take(idx, 0).take(idx, 1), b[idx])
            except np.linalg.LinAlgError:
                return None
            if not np.isfinite(z).all():
                return None
            if (z > 0).all():
                x[:] = 0.0
                x[idx] = z
                break
            if entered >= 0 and z[np.searchsorted(idx, entered)] <= 0:
                # the variable just added takes no positive weight: its gradient was rounding
                passive[entered] = False
                excluded[entered] = True
                entered = -1
                continue
            xp = x[idx]
            neg = z <= 0
            ratio = xp[neg] / (xp[neg] - z[neg])
            alpha = float(ratio.min())
            x[idx] = xp + alpha * (z - xp)
            leave = idx[neg][ratio <= alpha]
            x[leave] = 0.0
            passive &= x > 0
            x[~passive] = 0.0
            entered = -1
        solved = False
        w = b - G @ x
        w[passive | excluded] = -np.inf
        t = int(np.argmax(w))
        if not w[t] > tol:
            return x
        passive[t] = True
        entered = t
    return None


@dataclass
class OMPResult:
    """Selected atoms in the order chosen, their weights (on unit-norm columns), and residuals.

    ``residual_norms[k]`` is ``‖y − X_S β‖`` after ``k + 1`` atoms; ``coef_original`` rescales the
    weights to the original (unnormalised) columns.
    """

    support: list[int]
    coef: np.ndarray
    coef_original: np.ndarray
    residual_norms: list[float]
    target_norm: float

    @property
    def relative_residual(self) -> float:
        return self.residual_norms[-1] / self.target_norm if self.residual_norms and self.target_norm else float("nan")


def omp(X, y, n_atoms: int, *, nonneg: bool = False, tol: float | None = None) -> OMPResult:
    """Greedy OMP: repeatedly add the column most correlated with the residual, refit, repeat.

    Parameters
    ----------
    X : array (M, N)
        One column per candidate atom (training point); scaled to unit norm internally.
    y : array (M,)
        The target.
    n_atoms : int
        Largest number of atoms to select (ω).
    nonneg : bool
        Select by the largest *positive* correlation and refit by NNLS.
    tol : float, optional
        Stop early once the residual norm is at most ``tol``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(40, 25))
    >>> y = 2 * X[:, 3] - X[:, 7]
    >>> sorted(omp(X, y, 2).support)
    [3, 7]
    """
    X = _as_double("X", X)
    y = _as_double("y", y).reshape(-1)
    if X.ndim != 2 or X.shape[0] != len(y):
        raise ValueError(f"X must be (M, N) with M = len(y) = {len(y)}; got {tuple(X.shape)}")
    check_int("n_atoms", n_atoms, minimum=1, maximum=X.shape[1])
    _warn_underdetermined(X.shape[0], n_atoms)
    norms = X.norm(dim=0)
    usable = norms > 1e-12
    Xn = X / torch.where(usable, norms, torch.ones_like(norms))
    support: list[int] = []
    r = y.clone()
    residuals: list[float] = []
    coef = torch.zeros(0, dtype=torch.double)
    available = usable.clone()
    for _ in range(n_atoms):
        c = Xn.T @ r
        score = c if nonneg else c.abs()
        score = torch.where(available, score, torch.full_like(score, -torch.inf))
        j = int(torch.argmax(score))
        if not bool(available[j]) or score[j] <= 1e-12 * max(float(y.norm()), 1e-300):
            break
        support.append(j)
        available[j] = False
        coef = _fit(Xn[:, support], y, nonneg)
        r = y - Xn[:, support] @ coef
        residuals.append(float(r.norm()))
        if tol is not None and residuals[-1] <= tol:
            break
    coef_np = coef.numpy()
    return OMPResult(support=support, coef=coef_np, coef_original=coef_np / norms[support].numpy(),
                     residual_norms=residuals, target_norm=float(y.norm()))


@dataclass
class _Trace:
    offered: int = 0
    added: int = 0
    replacements: int = 0
    refreshed: int = 0
    residual_norms: list = field(default_factory=list)


class OnlineOMP:
    """VTruST's online OMP: fill the selection to ω atoms, then swap in an incoming atom when the
    least-squares approximation of the current target improves.

    With ``nonneg=True`` the weights are non-negative least squares (NNLS): an atom helps the
    approximation only through a positive weight, so a training point is never kept *for* the harm
    it does (a signed fit uses a harmful point with a negative weight as readily as a helpful one
    with a positive weight). The selection fills to ω (an atom that cannot help gets weight 0);
    once full, an incoming atom that correlates positively with the current residual (so it would
    enter the fit) replaces the selected atom of smallest weight (zero-weight atoms first) if the
    exact NNLS residual drops. VTruST's own replacement rule (Das et al. 2024, Algorithm 2)
    likewise only replaces selected points of non-positive weight. ω is a size, not a count of
    useful atoms: NNLS over every atom offered may use fewer than ω, and the atoms that end with
    weight 0 are counted in ``summary()["n_nonpositive_weight"]``.

    Non-negative weights do not make the selection a ranking by value. Least squares uses a
    column for whatever lowers the error, and an atom whose column is *opposed* to the target
    (negative cosine: its value is negative) still enters with a positive weight when it cancels
    the part of other selected columns that points away from the target.

    For each incoming unit-norm column ``x_i`` once the selection is full, the selected atom whose
    removal costs least is found exactly from the inverse Gram matrix (removing atom ``j``
    raises the residual sum of squares by ``β_j² / (G⁻¹)_jj``); the swap is made only if the exact
    residual after removing that atom and adding ``x_i`` is smaller than the current one. An atom
    already selected that arrives again with fresher features (a later epoch) replaces its own old
    column under the same test. Weights are the ordinary least-squares fit (a tiny ridge keeps the
    Gram matrix invertible); every change keeps ``G⁻¹``, ``β`` and the residual exact by rank-one
    updates (a rank-2 Woodbury update of ``G⁻¹`` per swap), O(Mω + ω²) per incoming atom; the
    weights are refitted from scratch at every :meth:`start_epoch` to shed rounding drift.

    With ``nonneg=True`` and ``fast=True`` (default) :meth:`offer` computes the correlations of all
    incoming atoms with the residual in one product and runs the exact swap test only for those
    that could enter: an atom with ``xᵀr ≤ 0`` cannot lower the NNLS residual (the current ``r``
    bounds the swapped problem's residual from below through its dual), so this prunes nothing the
    test would accept, for fresher columns of selected atoms too. The correlations are recomputed
    only after the selection changes. The exact test solves the swapped NNLS in Gram form
    (``X_SᵀX_S`` changes in one row and column), warm-started from the current weights, instead of
    calling :func:`scipy.optimize.nnls` on the M × ω columns; the residual it compares is computed
    from the columns. The selection is the per-atom loop's up to rounding (the tests compare them
    offer by offer); ``fast=False`` runs that loop, with a fresh scipy NNLS at every test.

    Parameters
    ----------
    n_atoms : int
        ω, the size of the selected set.
    ridge : float
        Added to the Gram diagonal (relative to unit-norm columns).
    refit_every : int
        Refit ``G⁻¹`` and the weights from scratch after this many swaps (numerical hygiene).
    nonneg : bool
        Non-negative weights (NNLS, refitted at every change) instead of ordinary least squares.
    fast : bool
        With ``nonneg=True``: screen the incoming atoms together and solve the swap tests in Gram
        form from a warm start (default), or test atom by atom with scipy's NNLS (the reference).
        The signed fit is the same either way.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(60, 30)); y = X[:, [2, 9, 17]] @ np.array([1.0, -2.0, 1.5])
    >>> sel = OnlineOMP(n_atoms=3)
    >>> sel.start_epoch(y)
    >>> for _ in range(3):
    ...     sel.offer(np.arange(30), X)
    >>> sorted(sel.selected_ids), sel.relative_residual < 1e-6
    ([2, 9, 17], True)
    """

    def __init__(self, *, n_atoms: int, ridge: float = 1e-10, refit_every: int = 100, nonneg: bool = False,
                 fast: bool = True):
        self.n_atoms = check_int("n_atoms", n_atoms, minimum=1)
        if not isinstance(nonneg, bool):
            raise TypeError(f"nonneg must be True or False; got {nonneg!r}")
        self.nonneg = nonneg
        if not isinstance(fast, bool):
            raise TypeError(f"fast must be True or False; got {fast!r}")
        self.fast = fast
        self._gram: np.ndarray | None = None  # X_Sᵀ X_S (non-negative fast path)
        self._gy: np.ndarray | None = None  # X_Sᵀ y (non-negative fast path)
        self.ridge = float(ridge)
        self.refit_every = check_int("refit_every", refit_every, minimum=1)
        self.ids: list = []
        self._cols: torch.Tensor | None = None  # (M, k)
        self._Ginv: torch.Tensor | None = None  # (k, k)
        self._b: torch.Tensor | None = None  # X_Sᵀ y
        self.y: torch.Tensor | None = None
        self.beta = torch.zeros(0, dtype=torch.double)
        self.r: torch.Tensor | None = None
        self.trace = _Trace()
        self._warned = False

    # -- state ---------------------------------------------------------------------------
    @property
    def selected_ids(self) -> list:
        return list(self.ids)

    @property
    def n_replacements(self) -> int:
        return self.trace.replacements

    @property
    def n_nonpositive_weight(self) -> int:
        """Selected atoms whose weight is at most ``1e-10 · ‖y‖`` (unit-norm columns): 0 up to rounding, or negative."""
        if self.y is None or len(self.beta) == 0:
            return 0
        return int((self.beta <= 1e-10 * float(self.y.norm())).sum())

    @property
    def residual_norm(self) -> float:
        return float(self.r.norm()) if self.r is not None else float("nan")

    @property
    def relative_residual(self) -> float:
        yn = float(self.y.norm()) if self.y is not None else 0.0
        return self.residual_norm / yn if yn else float("nan")

    def _refit(self) -> None:
        k = len(self.ids)
        if k == 0:
            self._Ginv = torch.zeros(0, 0, dtype=torch.double)
            self._b = torch.zeros(0, dtype=torch.double)
            self.beta = torch.zeros(0, dtype=torch.double)
            self.r = self.y.clone()
            return
        if self.nonneg:
            self.beta = _fit(self._cols, self.y, True)
            self.r = self.y - self._cols @ self.beta
            if self.fast:
                A = self._cols.numpy()
                self._gram, self._gy = A.T @ A, A.T @ self.y.numpy()
            return
        G = self._cols.T @ self._cols + self.ridge * torch.eye(k, dtype=torch.double)
        self._Ginv = torch.linalg.inv(G)
        self._b = self._cols.T @ self.y
        self.beta = self._Ginv @ self._b
        self.r = self.y - self._cols @ self.beta

    def start_epoch(self, y) -> None:
        """Set the (cumulative) target for this epoch and refit the weights of the selected atoms."""
        y = _as_double("y", y).reshape(-1)
        if self.y is not None and len(y) != len(self.y):
            raise ValueError(f"the target must keep its length {len(self.y)}; got {len(y)}")
        if not self._warned:
            _warn_underdetermined(len(y), self.n_atoms)
            self._warned = True
        self.y = y
        self._refit()
        self.trace.residual_norms.append(self.residual_norm)

    # -- updates -------------------------------------------------------------------------
    def discard(self, ids) -> int:
        """Remove the selected atoms among ``ids`` and refit the weights of the rest.

        Returns how many were removed; the slots they leave are filled by later offers. The
        value-aware selector calls this for atoms left with no member of positive value.

        >>> sel = OnlineOMP(n_atoms=2)
        >>> sel.start_epoch([1.0, 0.0, 0.0])
        >>> sel.offer([4, 7], np.eye(3)[:, :2])
        >>> sel.discard([7, 9]), sel.selected_ids
        (1, [4])
        """
        drop = {i for i in np.asarray(list(ids)).tolist()} & set(self.ids)
        if not drop:
            return 0
        keep = [k for k, i in enumerate(self.ids) if i not in drop]
        self.ids = [self.ids[k] for k in keep]
        self._cols = self._cols[:, keep] if keep else None
        if self.y is not None:
            self._refit()
        return len(drop)

    def _append(self, i, x: torch.Tensor) -> None:
        k = len(self.ids)
        if k == 0:
            self._cols = x.unsqueeze(1)
            self._Ginv = torch.tensor([[1.0 / (float(x @ x) + self.ridge)]], dtype=torch.double)
            self._b = (x @ self.y).reshape(1)
        else:
            u = self._cols.T @ x
            v = self._Ginv @ u
            c = float(x @ x) + self.ridge - float(u @ v)
            c = max(c, 1e-14)
            top = self._Ginv + torch.outer(v, v) / c
            self._Ginv = torch.cat([torch.cat([top, (-v / c).unsqueeze(1)], 1),
                                    torch.cat([(-v / c).unsqueeze(0), torch.tensor([[1.0 / c]], dtype=torch.double)], 1)], 0)
            self._cols = torch.cat([self._cols, x.unsqueeze(1)], 1)
            self._b = torch.cat([self._b, (x @ self.y).reshape(1)])
        self.ids.append(i)
        self.beta = self._Ginv @ self._b
        self.r = self.y - self._cols @ self.beta

    def _try_swap(self, j: int, i, x: torch.Tensor) -> bool:
        """Replace atom ``j`` by ``x`` if the exact residual sum of squares drops.

        The test costs O(Mω + ω²) and copies nothing: the fit without ``j`` follows from ``G⁻¹``
        by the block-inverse identity, and adding ``x`` to it is one OMP step. An accepted swap
        updates ``G⁻¹`` in place by a rank-2 Woodbury update.
        """
        Gi, cols = self._Ginv, self._cols
        d = Gi[j, j]
        gj = Gi[:, j]
        # residual of the fit without atom j: β₋ = β − (β_j / d) G⁻¹e_j, so r₋ = r + (β_j / d) X G⁻¹e_j
        r_m = self.r + (self.beta[j] / d) * (cols @ gj)
        # one OMP step adding x to the fit without j: gain = (xᵀr₋)² / (xᵀx − uᵀG₋⁻¹u)
        u = cols.T @ x
        Giu = Gi @ u
        v = Giu - gj * u[j]  # = G⁻¹ restricted to keep, applied to u_keep, before the downdate term
        v = v - gj * (gj @ u - gj[j] * u[j]) / d
        v[j] = 0.0
        u_keep = u.clone()
        u_keep[j] = 0.0
        c = float(x @ x) + self.ridge - float(u_keep @ v)
        if c <= 1e-12:  # x lies in the span of the other atoms: no new direction
            return False
        gain = float(x @ r_m) ** 2 / c
        rss_new = float(r_m @ r_m) - gain
        rss_now = float(self.r @ self.r)
        if rss_new >= rss_now - 1e-12 * float(self.y @ self.y):
            return False
        # accept: column j becomes x. G' − G = e_j c'ᵀ + c' e_jᵀ with c = (new − old) column j of G
        old = cols.T @ cols[:, j]
        old[j] += self.ridge
        new = u.clone()
        new[j] = float(x @ x) + self.ridge
        cdelta = new - old
        cdelta[j] *= 0.5
        k = len(self.ids)
        e = torch.zeros(k, dtype=torch.double)
        e[j] = 1.0
        U = torch.stack([e, cdelta], 1)  # G' = G + U Vᵀ with V = [c', e]
        V = torch.stack([cdelta, e], 1)
        GiU = Gi @ U
        small = torch.eye(2, dtype=torch.double) + V.T @ GiU
        self._cols[:, j] = x
        self._b[j] = x @ self.y
        self.ids[j] = i
        try:
            Ginv = Gi - GiU @ torch.linalg.solve(small, V.T @ Gi)
            ok = bool(torch.isfinite(Ginv).all())
        except torch.linalg.LinAlgError:
            ok = False
        if ok:
            self._Ginv = Ginv
            self.beta = self._Ginv @ self._b
            self.r = self.y - self._cols @ self.beta
        else:  # the rank-2 update is numerically singular: refit from scratch
            self._refit()
        return True

    def _offer_nonneg(self, i, x: torch.Tensor) -> None:
        if i in self.ids:  # fresher features of a selected atom: keep them if the fit improves
            if self._swap_nonneg(self.ids.index(i), i, x):
                self.trace.refreshed += 1
            return
        if len(self.ids) < self.n_atoms:  # fill to ω (an atom that cannot help gets weight 0)
            self._cols = x.unsqueeze(1) if self._cols is None or not self.ids else torch.cat([self._cols, x.unsqueeze(1)], 1)
            self.ids.append(i)
            self._refit()
            self.trace.added += 1
        elif float(x @ self.r) > 1e-12 * float(self.y.norm()):  # it would enter the fit with a positive weight
            if self._swap_nonneg(int(torch.argmin(self.beta)), i, x):
                self.trace.replacements += 1

    def _swap_nonneg(self, j: int, i, x: torch.Tensor) -> bool:
        cols = self._cols.clone()
        cols[:, j] = x
        beta = _fit(cols, self.y, True)
        r = self.y - cols @ beta
        if float(r @ r) >= float(self.r @ self.r) - 1e-12 * float(self.y @ self.y):
            return False
        self._cols, self.beta, self.r = cols, beta, r
        self.ids[j] = i
        return True

    # -- non-negative fast path: screening and warm-started NNLS -------------------------------
    def _nnls_with(self, G: np.ndarray, gy: np.ndarray, x0: np.ndarray, A_new, solved: bool = False) -> np.ndarray:
        """NNLS weights for the Gram system ``G, gy`` from ``x0``; scipy on the columns ``A_new()`` if that fails."""
        y = self.y.numpy()
        beta = _nnls_gram(G, gy, x0, tol=1e-13 * max(float(np.linalg.norm(y)), 1e-300), solved=solved)
        if beta is None:
            beta = nnls(A_new(), y)[0]
        return beta

    def _append_gram(self, i, x: np.ndarray) -> None:
        """Fill: add column ``x`` and refit the non-negative weights from the previous ones."""
        y = self.y.numpy()
        if not self.ids:
            A = x[:, None].copy()
            G, gy, x0 = A.T @ A, A.T @ y, np.zeros(1)
        else:
            A_old = self._cols.numpy()
            u = A_old.T @ x
            G = np.block([[self._gram, u[:, None]], [u[None, :], np.array([[x @ x]])]])
            gy = np.append(self._gy, x @ y)
            x0 = np.append(self.beta.numpy(), 0.0)
            A = np.concatenate([A_old, x[:, None]], 1)
        beta = self._nnls_with(G, gy, x0, lambda: A)
        self._cols, self._gram, self._gy = torch.from_numpy(A), G, gy
        self.beta, self.r = torch.from_numpy(beta), torch.from_numpy(y - A @ beta)
        self.ids.append(i)

    def _swap_gram(self, j: int, i, x: np.ndarray) -> bool:
        """:meth:`_swap_nonneg` on the Gram matrix: the same exact test, the weights from a warm start.

        Column ``j`` changes, so one row and column of ``X_SᵀX_S`` do (``X_Sᵀx``, ``M·ω``); the new
        NNLS optimum starts from the current weights with ``β_j = 0`` (feasible) and solves systems of
        the passive set's size. The residual is computed from the columns, as in the exact test.
        """
        A, y = self._cols.numpy(), self.y.numpy()
        u = A.T @ x
        G = self._gram.copy()
        G[j, :] = u
        G[:, j] = u
        G[j, j] = x @ x
        gy = self._gy.copy()
        gy[j] = x @ y
        x0 = self.beta.numpy().copy()
        solved = not x0[j] > 0  # the weights solve the unchanged passive system already
        x0[j] = 0.0

        def swapped():
            B = A.copy()
            B[:, j] = x
            return B

        beta = self._nnls_with(G, gy, x0, swapped, solved=solved)
        r = y - A @ beta + (A[:, j] - x) * beta[j]
        rnow = self.r.numpy()
        if float(r @ r) >= float(rnow @ rnow) - 1e-12 * float(y @ y):
            return False
        A[:, j] = x  # in place: self._cols shares this memory
        self._gram, self._gy = G, gy
        self.beta, self.r = torch.from_numpy(beta), torch.from_numpy(r)
        self.ids[j] = i
        return True

    def _offer_nonneg_fast(self, ids: list, X: torch.Tensor, usable: torch.Tensor) -> None:
        """Offer unit-norm columns ``X`` in order, screening all of them against the residual at once.

        An atom can lower the NNLS residual only if it correlates positively with the current
        residual ``r``: the current weights are the NNLS optimum, so ``x_kᵀr ≤ 0`` for every selected
        column (``= 0`` where ``β_k > 0``) and ``yᵀr = ‖r‖²``; if also ``xᵀr ≤ 0``, ``r`` is a feasible
        point of the dual of the swapped problem and bounds its residual sum of squares from below by
        the current one. So a selected atom's fresher column is tested only if ``xᵀr > 0``, and an
        incoming atom (as before) only if ``xᵀr > 10⁻¹²‖y‖``. Every correlation is one product
        ``Xᵀr`` for the atoms still to come, recomputed only after a change of the selection (the
        residual is unchanged otherwise); the atoms that pass get the exact test of
        :meth:`_swap_gram`, in the order offered.
        """
        Xn = X.numpy()
        slot = {i: k for k, i in enumerate(self.ids)}
        thr = 1e-12 * float(self.y.norm())
        usable_np = usable.numpy()
        B, pos = len(ids), 0
        while pos < B:
            if len(self.ids) < self.n_atoms:  # filling: one atom at a time (an atom that cannot help gets weight 0)
                i = ids[pos]
                if usable_np[pos]:
                    x = Xn[:, pos]
                    if i in slot:
                        if float(x @ self.r.numpy()) > 0 and self._swap_gram(slot[i], i, x):
                            self.trace.refreshed += 1
                    else:
                        slot[i] = len(self.ids)
                        self._append_gram(i, x)
                        self.trace.added += 1
                pos += 1
                continue
            c = Xn[:, pos:].T @ self.r.numpy()
            changed = False
            for o in range(B - pos):
                b = pos + o
                if not usable_np[b]:
                    continue
                i = ids[b]
                k = slot.get(i)
                if k is not None:
                    if c[o] > 0 and self._swap_gram(k, i, Xn[:, b]):
                        self.trace.refreshed += 1
                        changed = True
                elif c[o] > thr:
                    j = int(np.argmin(self.beta.numpy()))
                    old = self.ids[j]
                    if self._swap_gram(j, i, Xn[:, b]):
                        del slot[old]
                        slot[i] = j
                        self.trace.replacements += 1
                        changed = True
                if changed:
                    pos = b + 1
                    break
            else:
                pos = B

    def offer(self, ids, X) -> None:
        """Stream incoming atoms: ``X`` is (M, B), column ``b`` belongs to training point ``ids[b]``."""
        if self.y is None:
            raise RuntimeError("call start_epoch(y) before offer()")
        X = _as_double("X", X)
        if X.ndim != 2 or X.shape[0] != len(self.y):
            raise ValueError(f"X must be (M, B) with M = {len(self.y)}; got {tuple(X.shape)}")
        ids = list(np.asarray(ids).tolist())
        if len(ids) != X.shape[1]:
            raise ValueError(f"ids has {len(ids)} entries for {X.shape[1]} columns")
        norms = X.norm(dim=0)
        if self.nonneg and self.fast:
            usable = norms > 1e-12
            self.trace.offered += len(ids)
            self._offer_nonneg_fast(ids, (X / torch.where(usable, norms, torch.ones_like(norms))).contiguous(), usable)
            self.trace.residual_norms.append(self.residual_norm)
            return
        for b, i in enumerate(ids):
            self.trace.offered += 1
            if norms[b] <= 1e-12:
                continue
            x = X[:, b] / norms[b]
            if self.nonneg:
                self._offer_nonneg(i, x)
            elif i in self.ids:
                if self._try_swap(self.ids.index(i), i, x):
                    self.trace.refreshed += 1
            elif len(self.ids) < self.n_atoms:
                self._append(i, x)
                self.trace.added += 1
            else:
                cost = self.beta**2 / torch.diagonal(self._Ginv)
                if self._try_swap(int(torch.argmin(cost)), i, x):
                    self.trace.replacements += 1
                    if self.trace.replacements % self.refit_every == 0:
                        self._refit()  # shed the rounding drift of many rank-2 updates
        self.trace.residual_norms.append(self.residual_norm)

    def summary(self) -> dict:
        """Diagnostics: sizes, residual, and how many atoms were added, replaced or refreshed.

        ``n_nonpositive_weight`` counts the selected atoms whose current weight is at most 0 (see
        :attr:`n_nonpositive_weight`): with ``nonneg=True`` the atoms the fit does not use (they
        only fill ω); with ordinary least squares the atoms used with a negative sign (kept for the
        harm they do), the only ones VTruST's own replacement rule may evict.
        """
        return {
            "n_selected": len(self.ids), "n_atoms": self.n_atoms,
            "n_nonpositive_weight": self.n_nonpositive_weight,
            "target_rows": None if self.y is None else len(self.y),
            "relative_residual": self.relative_residual, "offered": self.trace.offered,
            "added": self.trace.added, "replacements": self.trace.replacements, "refreshed": self.trace.refreshed,
        }
