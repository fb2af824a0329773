"""Shared test settings: CPU, small compile budgets, hypothesis profile without deadlines."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import hypothesis  # noqa: E402

hypothesis.settings.register_profile("repo", deadline=None, max_examples=25, derandomize=True)
hypothesis.settings.load_profile("repo")
