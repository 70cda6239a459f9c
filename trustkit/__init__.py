"""trustkit: trustworthy machine learning under compute budgets."""

__version__ = "0.1.0"


def _apply_thread_setting() -> None:
    """A process started by trustkit (kernel, worker) inherits ``TRUSTKIT_THREADS``: apply it."""
    import os

    if os.environ.get("TRUSTKIT_THREADS"):
        from .config import set_threads

        set_threads()


_apply_thread_setting()
