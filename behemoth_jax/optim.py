"""AdamW with linear warmup + cosine decay and global-norm clipping, as optax transforms."""

from __future__ import annotations

import dataclasses

import optax


@dataclasses.dataclass(frozen=True)
class OptimConfig:
  learning_rate: float = 1e-3
  min_lr_ratio: float = 0.1  # the cosine decays to learning_rate * min_lr_ratio
  warmup_steps: int = 100
  total_steps: int = 1000
  weight_decay: float = 0.1
  b1: float = 0.9
  b2: float = 0.95
  eps: float = 1e-8
  grad_clip: float = 1.0  # 0 disables clipping

  def validate(self) -> None:
    if self.learning_rate <= 0:
      raise ValueError(f"--config.learning_rate must be > 0, got {self.learning_rate}")
    if not 0 <= self.min_lr_ratio <= 1:
      raise ValueError(f"--config.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
    if self.total_steps < 1:
      raise ValueError(f"--config.total_steps must be >= 1, got {self.total_steps}")
    if not 0 <= self.warmup_steps <= self.total_steps:
      raise ValueError(f"--config.warmup_steps must be in [0, total_steps={self.total_steps}], "
                       f"got {self.warmup_steps}")
    if self.grad_clip < 0:
      raise ValueError(f"--config.grad_clip must be >= 0, got {self.grad_clip}")


def schedule(cfg: OptimConfig) -> optax.Schedule:
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=cfg.learning_rate, warmup_steps=cfg.warmup_steps,
      decay_steps=max(cfg.total_steps, cfg.warmup_steps + 1),
      end_value=cfg.learning_rate * cfg.min_lr_ratio)


# Weight decay on matmul kernels only: not on biases, norms or the embedding, as in GPT-NeoX.
DECAY_PATTERN = r".*/kernel"


def _decay_mask(params):
  from behemoth_jax import model  # pylint: disable=g-import-not-at-top
  return model.path_mask(params, DECAY_PATTERN)


def make_optimizer(cfg: OptimConfig) -> optax.GradientTransformation:
  cfg.validate()
  adamw = optax.adamw(schedule(cfg), b1=cfg.b1, b2=cfg.b2, eps=cfg.eps,
                      weight_decay=cfg.weight_decay, mask=_decay_mask)
  if cfg.grad_clip > 0:
    return optax.chain(optax.clip_by_global_norm(cfg.grad_clip), adamw)
  return adamw
