"""AdamW with linear warmup + cosine decay and global-norm clipping, as optax transforms."""

from __future__ import annotations

import dataclasses
import math

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
    """ValueError naming the config field (`--config.<field>: what is allowed, got <value>`)."""

    def require(ok: bool, field: str, allowed: str) -> None:
      if not ok:
        raise ValueError(f"--config.{field}: must be {allowed}, got {getattr(self, field)}")

    finite = {name: math.isfinite(getattr(self, name)) for name in
              ("learning_rate", "min_lr_ratio", "weight_decay", "b1", "b2", "eps", "grad_clip")}
    require(finite["learning_rate"] and self.learning_rate > 0, "learning_rate", "a finite number > 0")
    require(finite["min_lr_ratio"] and 0 <= self.min_lr_ratio <= 1, "min_lr_ratio", "in [0, 1]")
    require(self.total_steps >= 1, "total_steps", "an integer >= 1")
    require(0 <= self.warmup_steps <= self.total_steps, "warmup_steps",
            f"in [0, total_steps={self.total_steps}]")
    require(finite["weight_decay"] and self.weight_decay >= 0, "weight_decay", "a finite number >= 0")
    require(finite["b1"] and 0 <= self.b1 < 1, "b1", "in [0, 1)")
    require(finite["b2"] and 0 <= self.b2 < 1, "b2", "in [0, 1)")
    require(finite["eps"] and self.eps > 0, "eps", "a finite number > 0")
    require(finite["grad_clip"] and self.grad_clip >= 0, "grad_clip", "a finite number >= 0 (0: no clipping)")


def schedule(cfg: OptimConfig) -> optax.Schedule:
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=cfg.learning_rate, warmup_steps=cfg.warmup_steps,
      decay_steps=max(cfg.total_steps, cfg.warmup_steps + 1),
      end_value=cfg.learning_rate * cfg.min_lr_ratio)


# Weight decay on matmul kernels only: not on biases, norms or the embedding, as in GPT-NeoX.
DECAY_PATTERN = r".*/kernel"


def _decay_mask(params):
  from behemoth_jax.model import model  # pylint: disable=g-import-not-at-top
  return model.path_mask(params, DECAY_PATTERN)


def make_optimizer(cfg: OptimConfig) -> optax.GradientTransformation:
  cfg.validate()
  adamw = optax.adamw(schedule(cfg), b1=cfg.b1, b2=cfg.b2, eps=cfg.eps,
                      weight_decay=cfg.weight_decay, mask=_decay_mask)
  if cfg.grad_clip > 0:
    return optax.chain(optax.clip_by_global_norm(cfg.grad_clip), adamw)
  return adamw
