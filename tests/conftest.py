"""Shared test settings: CPU, small compile budgets, hypothesis profile without deadlines."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import hypothesis  # noqa: E402
import jax  # noqa: E402

# Tests compile many small programs once each: XLA's optimisation passes cost more than they save here.
# Process-wide, so it is set once for every test module (subprocesses get JAX_DISABLE_MOST_OPTIMIZATIONS).
jax.config.update("jax_disable_most_optimizations", True)

hypothesis.settings.register_profile("repo", deadline=None, max_examples=25, derandomize=True)
hypothesis.settings.load_profile("repo")
