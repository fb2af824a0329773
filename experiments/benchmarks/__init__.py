"""The benchmark suites that `python -m experiments.bench` runs; each module also runs alone
(`python -m experiments.benchmarks.<suite> [--quick]`), one JSON row per measurement.
harness holds what they share (CPU model, median timer, the stand-alone main).

Entry points: data.run, train.run, edit_sets.run, editing.run (with closed_form.run), evaluation.run.
"""
