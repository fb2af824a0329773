"""experiments/notebooks/quickstart.ipynb runs top to bottom on CPU at tiny size (nbclient) and shows the
report's plots inline. Slow: a fresh kernel pretrains and runs the tiny rank experiment."""

import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quickstart_notebook_runs_at_tiny_size_and_shows_plots(tmp_path, monkeypatch):
  nbformat = pytest.importorskip("nbformat")
  nbclient = pytest.importorskip("nbclient")
  nb = nbformat.read(REPO / "experiments" / "notebooks" / "quickstart.ipynb", as_version=4)
  # The notebook writes under runs/ of its working directory: a copy of the repository would be slow,
  # so it runs in a scratch folder with the repository on the path.
  monkeypatch.setenv("BEHEMOTH_SIZE", "tiny")
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  monkeypatch.setenv("PYTHONPATH", f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
  client = nbclient.NotebookClient(nb, timeout=1200, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
  client.execute()
  outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
  assert not [o for o in outputs if o.get("output_type") == "error"]
  assert any("image/png" in o.get("data", {}) for o in outputs)  # the plots, inline
  assert any("text/markdown" in o.get("data", {}) for o in outputs)  # the report
  assert "-> size tiny" in "".join(o.get("text", "") for o in outputs)
  assert (tmp_path / "runs" / "quickstart" / "report" / "results.md").is_file()
