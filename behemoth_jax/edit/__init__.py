"""Editing and unlearning: methods that return a weight delta, the modes that run them, the run in a work dir.
Gradient methods (methods), closed-form locate-then-edit (closed_form, covariance), causal tracing,
the independent/batch/sequential modes, edit rows. Imports model/, evaluate/ and train/.

Entry points: runner.run (what `python -m experiments.edit` calls); methods.train_delta;
closed_form.rome_delta / least_squares_delta; covariance.cached_covariance;
tracing.trace; modes.run_independent_chunk / train_batch / run_sequential; edit_rows.eval_splits.
"""
