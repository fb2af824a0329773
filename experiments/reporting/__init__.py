"""The Markdown report with PNG plots that `python -m experiments.report` writes, as a library.
No flags: tests and other binaries build reports through it.
Imports behemoth_jax.evaluate (pooling) and data_gen.common.

Entry points: markdown.build, markdown.kind_of.
"""
