"""The model: a GPT-NeoX/Pythia-style Flax module applied as a pure function of its parameters.
Also what acts on it directly: weight deltas keyed by parameter path, the losses, and FLOP counts.
Imports nothing else of behemoth_jax.

Entry points: model.ModelConfig, model.init_params, model.apply / model.forward, model.param_paths;
deltas.resolve_targets / deltas.merge / deltas.save / deltas.load; losses.lm_loss;
flops.measure_matmul_peak, flops.mfu.
"""
