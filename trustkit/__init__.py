"""trustkit: trustworthy machine learning under compute budgets."""

__version__ = "0.1.0"


def _apply_thread_setting() -> None:
    """A process started by trustkit (kernel, worker) inherits ``TRUSTKIT_THREADS``: apply it."""
    import os

    if os.environ.get("TRUSTKIT_THREADS"):
        from .config import set_threads

        set_threads()


_apply_thread_setting()


def _quiet_library_import_warnings() -> None:
    """Import-time notices of libraries that say nothing about a run (torch finding no CUDA runtime
    on a CPU machine; torchao registering an enum with torch.compile) go to stderr and would stand
    in every report page; they are silenced. Warnings about a run itself are not touched."""
    import logging

    for name in ("torch.utils.cpp_extension", "torch.utils._pytree"):
        logging.getLogger(name).setLevel(logging.ERROR)


_quiet_library_import_warnings()
