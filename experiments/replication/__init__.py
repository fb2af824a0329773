"""The paper's experiments as `python -m experiments.paper` runs them: arms, resumable runs, results.
runs decides and runs each experiment's arms; results pools them into summaries, plots and sections and
assembles docs/results.md; quickstart is what the Colab notebook calls.

Entry points: runs.run_experiment, runs.arms; results.assemble_docs; quickstart.run.
"""
