"""Shared test settings: CPU, small compile budgets, hypothesis profile without deadlines."""

import os
import shutil
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import hypothesis  # noqa: E402
import pytest  # noqa: E402
import jax  # noqa: E402

# Tests compile many small programs once each: XLA's optimisation passes cost more than they save here.
# Process-wide, so it is set once for every test module (subprocesses get JAX_DISABLE_MOST_OPTIMIZATIONS).
jax.config.update("jax_disable_most_optimizations", True)


def pytest_configure(config):
  # Many tests compile the same tiny programs (each edit run builds its jitted closures anew): a persistent
  # compilation cache for the session serves the repeats from disk.
  config._jax_cache = tempfile.mkdtemp(prefix="jax_cache_")
  jax.config.update("jax_compilation_cache_dir", config._jax_cache)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def pytest_unconfigure(config):
  shutil.rmtree(getattr(config, "_jax_cache", ""), ignore_errors=True)

hypothesis.settings.register_profile("repo", deadline=None, max_examples=25, derandomize=True)
hypothesis.settings.load_profile("repo")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
  """A pretraining work dir of the tiny config trained until it knows most of its facts (~15 s), shared
  by every test module that edits a model (tests/edit/test_edit.py, tests/edit/test_closed_form.py)."""
  from behemoth_jax.train import pretraining  # pylint: disable=g-import-not-at-top
  from experiments.configs import pretrain as pretrain_configs  # pylint: disable=g-import-not-at-top
  workdir = tmp_path_factory.mktemp("tiny_pretrained")
  config = pretrain_configs.get_config("tiny")
  config.progress, config.total_steps, config.learning_rate = False, 300, 1e-2
  config.eval_every = config.checkpoint_every = 300
  pretraining.run(config, workdir)
  return workdir
