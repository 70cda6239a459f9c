"""trustkit: trustworthy machine learning under compute budgets."""

__version__ = "0.1.0"

