r"""Pretraining configs: a Pythia-style model trained from scratch on a synthetic fact graph.

  python -m experiments.pretrain --config=experiments/configs/pretrain.py:small --workdir=runs/small

Names: tiny (tests, seconds), small (CPU demo, minutes), litgpt (the LitGPT speed-comparison shape),
pythia14m, pythia31m (the paper's model and data), pythia160m (GPU/TPU). Override any field with
--config.x=y, e.g. --config.total_steps=200 --config.model.width=64 --config.data.graph.num_subjects=1000.
"""

import ml_collections

# Pythia's published shapes (layers, width, heads).
MODELS = {
    "tiny": (2, 32, 2),
    "small": (4, 128, 4),
    "litgpt": (4, 128, 4),
    "pythia14m": (6, 128, 4),
    "pythia31m": (6, 256, 8),
    "pythia70m": (6, 512, 8),
    "pythia160m": (12, 768, 12),
}


def _base() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0

  c.data = ml_collections.ConfigDict()
  c.data.seed = 0
  # Empty: build the dataset from data.graph/data.corpus below; else a `data_gen.generate` output dir.
  c.data.dir = ""
  # Empty: sample batches on device; else read the text shards written under this directory (data/).
  c.data.corpus_dir = ""
  c.data.graph = ml_collections.ConfigDict(dict(
      num_subjects=100_000, num_relationships=6, num_objects=400, minority_position_entity_frac=0.0,
      correlated_pair=False, correlation_strength=1.0, binarize_first_correlated=False,
      num_nested_objects=0, questions_entity_frac=0.0))
  c.data.corpus = ml_collections.ConfigDict(dict(
      phrase_creator="inverted", inversion_frac=0.0, repeats=500, shuffle=True,
      minority_position_frac=0.1, questions_frac=0.0, obj_nested_obj_edges_upweight=1))

  c.model = ml_collections.ConfigDict(dict(
      num_layers=6, width=256, num_heads=8, max_len=256, mlp_ratio=4, rotary_pct=0.25,
      rotary_base=10000.0, gelu_approximate=True, compute_dtype="auto"))  # auto: bfloat16 on GPU/TPU, float32 on CPU

  c.batch_size = 64
  c.seq_len = 129  # tokens per row; the model sees seq_len - 1 inputs
  c.total_steps = 10_000
  # Steps the learning-rate schedule spans (0: total_steps). Larger: the run stops part way through it (the
  # retrain oracle trains exactly the steps a pretrained run trained, on that run's schedule).
  c.schedule_steps = 0
  c.learning_rate = 1e-3
  c.min_lr_ratio = 0.1
  c.warmup_steps = 200
  c.weight_decay = 0.1
  c.b1 = 0.9
  c.b2 = 0.95
  c.grad_clip = 1.0
  c.answer_only = False  # loss over all tokens, as in the paper

  c.log_every = 50
  c.eval_every = 1000
  c.eval_max_per_set = 2000  # probes per set in periodic evaluations; 0: all (the final one uses all)
  c.eval_chunk = 512
  c.target_accuracy = 0.0  # > 0: stop once every metric in stop_metrics reaches it (at an evaluation)
  c.stop_metrics = "eval/kind/subject_object/accuracy"  # comma-separated
  c.checkpoint_every = 1000
  c.keep_checkpoints = 2
  c.progress = True
  c.multihost = False
  return c


def get_config(name: str = "small") -> ml_collections.ConfigDict:
  if name not in MODELS:
    raise ValueError(f"--config: unknown config name {name!r}; the names are {', '.join(MODELS)}")
  c = _base()
  c.name = name
  c.model.num_layers, c.model.width, c.model.num_heads = MODELS[name]
  g = c.data.graph
  if name == "tiny":
    g.num_subjects, g.num_relationships, g.num_objects = 32, 2, 8
    c.data.corpus.repeats = 100
    c.model.max_len = 64
    c.batch_size, c.seq_len = 8, 33
    c.total_steps, c.warmup_steps = 40, 5
    c.log_every, c.eval_every, c.checkpoint_every = 5, 20, 20
    c.eval_max_per_set = 0
  elif name in ("small", "litgpt"):
    g.num_subjects, g.num_relationships, g.num_objects = 500, 4, 32
    c.model.max_len = 128
    c.batch_size, c.seq_len = 64, 65
    c.total_steps, c.warmup_steps = 2000, 100
    c.learning_rate = 2e-3
    c.log_every, c.eval_every, c.checkpoint_every = 50, 100, 500
    c.eval_max_per_set = 0
    c.target_accuracy = 0.99
  return c
