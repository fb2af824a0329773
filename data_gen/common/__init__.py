"""Helpers every package shares: one-line option errors, atomic writes, the progress line, binaries' main.
The bottom layer: numpy and the standard library only (cli also absl); data_gen, behemoth_jax and
experiments all import it, it imports none of them.

Entry points: errors.OptionError / require / check_*; atomic.write_json_atomic / atomic_directory;
progress.Progress; cli.run (absl app.run with one-line errors).
"""
