"""Hugging Face GPT-NeoX export and import: layouts, transformers parity, tokenizer, round trip, refusals.

The transformers tests need the `hf` extra (installed by `make`); nothing is fetched from a hub.
"""

import dataclasses
import json
import os
import pathlib
import subprocess
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # every model and tokenizer here is a local folder

import chex  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from behemoth_jax.evaluate import knowledge  # noqa: E402
from behemoth_jax.interop import hf  # noqa: E402
from behemoth_jax.model import model  # noqa: E402
from behemoth_jax.train import pretraining  # noqa: E402
from data_gen.common.errors import OptionError  # noqa: E402
from data_gen.export import text  # noqa: E402
from experiments import export  # noqa: E402
from experiments.configs import pretrain as pretrain_configs  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[2]
SUBPROCESS_ENV = {**os.environ, "JAX_DISABLE_MOST_OPTIMIZATIONS": "true", "JAX_PLATFORMS": "cpu",
                  "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}


def _transformers():
  pytest.importorskip("torch")
  return pytest.importorskip("transformers")


def _random_params(cfg, seed=0):
  """Init params with every leaf perturbed, so that a swapped bias or norm shows in the logits."""
  params = model.init_params(jax.random.key(seed), cfg)
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
  return jax.tree.unflatten(tree, [x + 0.05 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])


# ---------------------------------------------------------------------------------------------------
# Layout, without torch.


def test_fused_qkv_goes_from_q_k_v_blocks_to_per_head_interleaving():
  D, H = 12, 3
  K = D // H
  # Our column j*D + h*K + k holds the code (j, h, k): which of q/k/v, which head, which dimension.
  code_3xHxK = np.arange(3)[:, None, None] * 100 + np.arange(H)[None, :, None] * 10 + np.arange(K)
  kernel_Dx3D = np.broadcast_to(code_3xHxK.reshape(1, 3 * D), (D, 3 * D)).astype(np.float32)
  kernel_Dx3D = kernel_Dx3D + np.arange(D, dtype=np.float32)[:, None] * 1000  # input row, for the transpose
  weight_3DxD, bias_3D = hf.qkv_to_hf(kernel_Dx3D, code_3xHxK.reshape(3 * D).astype(np.float32), H)
  assert weight_3DxD.shape == (3 * D, D)
  for h in range(H):
    for j in range(3):
      for k in range(K):
        row = h * 3 * K + j * K + k  # transformers: view(..., H, 3K) then chunk(3) into q, k, v
        np.testing.assert_array_equal(weight_3DxD[row], 100 * j + 10 * h + k + 1000 * np.arange(D))
        assert bias_3D[row] == 100 * j + 10 * h + k
  back_kernel, back_bias = hf.qkv_from_hf(weight_3DxD, bias_3D, H)
  np.testing.assert_array_equal(back_kernel, kernel_Dx3D)
  np.testing.assert_array_equal(back_bias, code_3xHxK.reshape(3 * D))


def test_state_dict_names_and_torch_layouts():
  cfg = model.ModelConfig(vocab_size=37, num_layers=2, width=16, num_heads=2, max_len=8)
  params = _random_params(cfg)
  state = hf.to_hf_state(params, cfg)
  assert {k: v.shape for k, v in state.items()} == hf.expected_shapes(cfg)
  np.testing.assert_array_equal(state["embed_out.weight"], np.asarray(params["head"]["kernel"]).T)
  np.testing.assert_array_equal(state["gpt_neox.layers.1.mlp.dense_h_to_4h.weight"],
                                np.asarray(params["layers"]["1"]["mlp"]["up"]["kernel"]).T)
  np.testing.assert_array_equal(state["gpt_neox.layers.0.post_attention_layernorm.bias"],
                                params["layers"]["0"]["ln_mlp"]["bias"])


@pytest.mark.parametrize("gelu_approximate,rotary_pct", [(True, 0.25), (False, 1.0), (True, 0.3)])
def test_export_import_round_trip_is_bit_identical(tmp_path, gelu_approximate, rotary_pct):
  cfg = model.ModelConfig(vocab_size=53, num_layers=3, width=40, num_heads=4, max_len=16,
                          gelu_approximate=gelu_approximate, rotary_pct=rotary_pct, rotary_base=500.0,
                          layer_norm_eps=1e-6)
  params = _random_params(cfg, seed=3)
  hf.save(tmp_path, params, cfg)
  loaded, loaded_cfg = hf.load_hf(tmp_path)
  assert jax.tree.structure(loaded) == jax.tree.structure(params)
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(params), jax.tree.leaves(loaded)):
    assert a.dtype == b.dtype == jnp.float32, path
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=model.path_name(path))
  assert loaded_cfg.rotary_dim == cfg.rotary_dim
  if rotary_pct == 0.3:  # 0.3 * 10 = 3 dims: ours rounds to 2, exported as 0.2 so transformers agrees
    assert loaded_cfg.rotary_pct == pytest.approx(0.2)
  else:
    assert loaded_cfg == cfg


def test_load_hf_reads_a_tied_bfloat16_sharded_checkpoint(tmp_path):
  """What a Pythia-shaped checkpoint from elsewhere may look like: bf16, shards, no output head."""
  from safetensors.flax import save_file
  cfg = model.ModelConfig(vocab_size=29, num_layers=2, width=16, num_heads=2, max_len=8)
  state = hf.to_hf_state(_random_params(cfg), cfg)
  del state["embed_out.weight"]
  names = sorted(state)
  shards = {"a.safetensors": names[: len(names) // 2], "b.safetensors": names[len(names) // 2:]}
  for f, keys in shards.items():
    save_file({k: jnp.asarray(state[k], jnp.bfloat16) for k in keys}, str(tmp_path / f))
  (tmp_path / hf.WEIGHTS_INDEX_FILE).write_text(json.dumps(
      {"weight_map": {k: f for f, keys in shards.items() for k in keys}}))
  config = hf.to_hf_config(cfg, 0, 0, 1)
  config["tie_word_embeddings"] = True
  (tmp_path / hf.CONFIG_FILE).write_text(json.dumps(config))
  params, loaded_cfg = hf.load_hf(tmp_path)
  assert loaded_cfg == cfg
  bf16 = lambda x: np.asarray(jnp.asarray(x, jnp.bfloat16), np.float32)
  np.testing.assert_array_equal(params["head"]["kernel"], bf16(state["gpt_neox.embed_in.weight"]).T)
  np.testing.assert_array_equal(params["layers"]["1"]["attn"]["out"]["kernel"],
                                bf16(state["gpt_neox.layers.1.attention.dense.weight"]).T)


def _edit_config(path, **changes):
  c = json.loads((path / hf.CONFIG_FILE).read_text())
  c.update(changes)
  (path / hf.CONFIG_FILE).write_text(json.dumps(c))


@pytest.mark.parametrize("change,message", [
    ({"model_type": "llama"}, "model_type must be gpt_neox"),
    ({"use_parallel_residual": False}, "use_parallel_residual must be true"),
    ({"hidden_act": "relu"}, "hidden_act must be one of"),
    ({"intermediate_size": 50}, "intermediate_size 50 must be a multiple of hidden_size 16"),
    ({"rope_parameters": {"rope_type": "linear", "factor": 2.0}}, "rope type must be default"),
    ({"num_hidden_layers": 3}, "tensor gpt_neox.layers.2."),
    ({"vocab_size": 30}, "tensor gpt_neox.embed_in.weight has shape (29, 16)"),
])
def test_load_hf_refuses_what_the_model_cannot_represent_in_one_line(tmp_path, change, message):
  cfg = model.ModelConfig(vocab_size=29, num_layers=2, width=16, num_heads=2, max_len=8)
  hf.save(tmp_path, _random_params(cfg), cfg)
  _edit_config(tmp_path, **change)
  with pytest.raises(hf.HFCheckpointError) as e:
    hf.load_hf(tmp_path)
  assert message in str(e.value) and "\n" not in str(e.value)


def test_load_hf_refuses_a_folder_without_a_checkpoint(tmp_path):
  with pytest.raises(hf.HFCheckpointError, match="has no config.json"):
    hf.load_hf(tmp_path)
  (tmp_path / hf.CONFIG_FILE).write_text(json.dumps(hf.to_hf_config(
      model.ModelConfig(vocab_size=29, num_layers=1, width=16, num_heads=2), 0, 0, 1)))
  with pytest.raises(hf.HFCheckpointError, match="has neither model.safetensors"):
    hf.load_hf(tmp_path)


# ---------------------------------------------------------------------------------------------------
# A trained tiny model (tanh GELU, as trained here by default) and one with Pythia's exact GELU.


def _tiny(**model_overrides):
  c = pretrain_configs.get_config("tiny")
  c.progress = False
  c.total_steps, c.eval_every, c.checkpoint_every = 60, 60, 60
  for k, v in model_overrides.items():
    c.model[k] = v
  return c


def _train_and_export(root, gelu):
  """(pretrain work dir, export dir, our params, model config, dataset)."""
  pretraining.run(_tiny(gelu_approximate=gelu == "tanh"), root / "pretrain")
  out = export.export(root / "pretrain", root / "hf")
  params, cfg, dataset, _ = export.read_pretrained(root / "pretrain")
  assert cfg.gelu_approximate == (gelu == "tanh")
  return root / "pretrain", out, params, cfg, dataset


@pytest.fixture(scope="module")
def tanh_model(tmp_path_factory):
  return _train_and_export(tmp_path_factory.mktemp("hf_tanh"), "tanh")


@pytest.fixture(scope="module")
def exact_model(tmp_path_factory):
  return _train_and_export(tmp_path_factory.mktemp("hf_exact"), "exact")


@pytest.fixture(params=["tanh", "exact"])
def exported(request):
  return request.getfixturevalue(f"{request.param}_model")


def test_export_folder_has_the_transformers_files(exported):
  _, out, _, cfg, dataset = exported
  assert sorted(p.name for p in out.iterdir()) == [
      "behemoth.json", "config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
      "tokenizer_config.json"]
  config = json.loads((out / "config.json").read_text())
  assert config["architectures"] == ["GPTNeoXForCausalLM"]
  assert config["hidden_act"] == ("gelu_new" if cfg.gelu_approximate else "gelu")
  assert config["use_parallel_residual"] and config["rotary_pct"] == cfg.rotary_pct
  assert config["vocab_size"] == dataset.vocab.size
  assert (config["bos_token_id"], config["eos_token_id"], config["pad_token_id"]) == (0, 0, 1)


def test_exported_then_imported_is_the_trained_model(exported):
  _, out, params, cfg, _ = exported
  loaded, loaded_cfg = hf.load_hf(out)
  assert loaded_cfg == cfg
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(loaded)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def _hf_model(out):
  transformers = _transformers()
  m = transformers.GPTNeoXForCausalLM.from_pretrained(out)
  m.eval()
  return m


def test_transformers_logits_equal_ours_on_random_batches(exported):
  import torch
  _, out, params, cfg, _ = exported
  hf_model = _hf_model(out)
  assert hf_model.dtype == torch.float32
  rng = np.random.default_rng(0)
  for B, T in ((4, cfg.max_len), (3, 17), (1, 1)):
    tokens_BxT = rng.integers(0, cfg.vocab_size, (B, T))
    ours = np.asarray(model.forward(params, jnp.asarray(tokens_BxT, jnp.int32), cfg))
    with torch.no_grad():
      theirs = hf_model(torch.as_tensor(tokens_BxT)).logits.numpy()
    chex.assert_equal_shape([ours, theirs])
    assert np.abs(ours - theirs).max() <= 1e-4, (B, T, np.abs(ours - theirs).max())


def _greedy(hf_model, prompt_NxP, num_tokens):
  """transformers' greedy generation of `num_tokens` tokens; -1 after an end-of-text stopped a row."""
  import torch
  with torch.no_grad():
    ids = hf_model.generate(torch.as_tensor(prompt_NxP, dtype=torch.long), do_sample=False,
                            max_new_tokens=num_tokens, min_new_tokens=0,
                            attention_mask=torch.ones(prompt_NxP.shape, dtype=torch.long)).numpy()
  new = ids[:, prompt_NxP.shape[1]:]
  return np.pad(new, ((0, 0), (0, num_tokens - new.shape[1])), constant_values=-1)


def test_transformers_greedy_generation_equals_our_exact_match(exported):
  _, out, params, cfg, dataset = exported
  hf_model = _hf_model(out)
  exact_match = knowledge.make_exact_match_fn(cfg)
  correct_total = []
  for name, probe in dataset.probes().items():
    if not len(probe):
      continue
    generated_NxA = _greedy(hf_model, probe.prompt_NxP, probe.answer_NxA.shape[1])
    theirs = np.all(generated_NxA == probe.answer_NxA, axis=1)
    ours = np.asarray(exact_match(params, probe.prompt_NxP, probe.answer_NxA))
    np.testing.assert_array_equal(theirs, ours, err_msg=name)
    correct_total.append(ours)
  correct = np.concatenate(correct_total)
  assert 0 < correct.mean() < 1, "a partly trained model, so that both outcomes are compared"


def test_auto_tokenizer_encodes_probe_text_to_our_ids(exported):
  transformers = _transformers()
  _, out, _, _, dataset = exported
  tokenizer = transformers.AutoTokenizer.from_pretrained(out)
  table = text.WordTable(dataset.vocab)
  for name, probe in dataset.probes().items():
    if not len(probe):
      continue
    rows_NxL = np.concatenate([probe.prompt_NxP, probe.answer_NxA], axis=1)
    for tokens_NxL in (probe.prompt_NxP, rows_NxL):
      lines = table.join(tokens_NxL).decode().splitlines()
      encoded = tokenizer(lines)["input_ids"]
      assert encoded == tokens_NxL.tolist(), name
  assert tokenizer.eos_token_id == 0 and tokenizer.pad_token_id == 1


# ---------------------------------------------------------------------------------------------------
# The binary and its refusals.


def _export_cmd(*args):
  return [sys.executable, "-m", "experiments.export", *args]


def _run(args):
  return subprocess.run(_export_cmd(*args), cwd=REPO, env=SUBPROCESS_ENV, capture_output=True, text=True,
                        timeout=300)


def test_binary_exports_the_same_files_as_the_function(tanh_model, tmp_path):
  pretrain, out, *_ = tanh_model
  r = _run([f"--pretrained={pretrain}", f"--output={tmp_path / 'hf'}"])
  assert r.returncode == 0, r.stderr
  for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
    assert (tmp_path / "hf" / name).read_bytes() == (out / name).read_bytes(), name


def _one_line_error(r, *needles):
  assert r.returncode == 1, (r.returncode, r.stderr)
  lines = r.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
  for needle in needles:
    assert needle in lines[0], lines[0]


def test_binary_refuses_a_work_dir_without_a_checkpoint(tanh_model, tmp_path):
  pretrain = tanh_model[0]
  empty = tmp_path / "no_checkpoint"
  empty.mkdir()
  (empty / "config.json").write_bytes((pretrain / "config.json").read_bytes())
  r = _run([f"--pretrained={empty}", f"--output={tmp_path / 'hf'}"])
  _one_line_error(r, "--pretrained", "no checkpoint")
  r = _run([f"--pretrained={tmp_path / 'missing'}", f"--output={tmp_path / 'hf'}"])
  _one_line_error(r, "--pretrained", "not a directory")
  assert not (tmp_path / "hf").exists() and not (empty / "checkpoints").exists()


def test_binary_refuses_an_existing_output_and_leaves_it_alone(tanh_model, tmp_path):
  pretrain = tanh_model[0]
  (tmp_path / "hf").mkdir()
  (tmp_path / "hf" / "keep.txt").write_text("mine")
  r = _run([f"--pretrained={pretrain}", f"--output={tmp_path / 'hf'}"])
  _one_line_error(r, "--output", "already exists")
  assert [p.name for p in (tmp_path / "hf").iterdir()] == ["keep.txt"]


def test_binary_refuses_a_missing_delta(tanh_model, tmp_path):
  r = _run([f"--pretrained={tanh_model[0]}", f"--delta={tmp_path / 'nope'}", f"--output={tmp_path / 'hf'}"])
  _one_line_error(r, "--delta", "not a directory")
  assert not (tmp_path / "hf").exists()


def test_binary_flag_errors_are_one_line(tmp_path):
  r = _run([f"--output={tmp_path / 'hf'}"])
  _one_line_error(r, "--pretrained")


def test_a_failure_while_writing_leaves_nothing(tanh_model, tmp_path, monkeypatch):
  def broken(*args, **kwargs):
    raise RuntimeError("disk full")
  monkeypatch.setattr(hf, "to_hf_state", broken)
  with pytest.raises(RuntimeError, match="disk full"):
    export.export(tanh_model[0], tmp_path / "hf")
  assert list(tmp_path.iterdir()) == []


def test_export_refusals_are_option_errors(tanh_model, tmp_path):
  with pytest.raises(OptionError, match="--output: .* already exists"):
    export.export(tanh_model[0], tmp_path)


# ---------------------------------------------------------------------------------------------------
# Deltas: merged into the exported weights.


def _random_lora(params, seed=0):
  """A LoRA delta on every MLP down-projection with non-zero factors (deltas.lora starts at b = 0)."""
  from behemoth_jax.model import deltas
  paths = deltas.resolve_targets(params, "mlp_down", kernels_only=True)
  delta = deltas.lora(jax.random.key(seed), params, paths, rank=2)
  return jax.tree.map(lambda x: x.replace(b=0.5 * jax.random.normal(jax.random.key(seed + 1), x.b.shape))
                      if isinstance(x, deltas.LowRank) else x, delta, is_leaf=deltas.is_leaf)


def test_export_merges_a_lora_delta_given_as_edit_work_dir(tanh_model, tmp_path):
  import torch
  from behemoth_jax.model import deltas
  pretrain, _, params, cfg, _ = tanh_model
  delta = _random_lora(params)
  deltas.save(tmp_path / "edit" / "deltas" / "batch", delta)
  out = export.export(pretrain, tmp_path / "hf", delta=tmp_path / "edit")
  provenance = json.loads((out / "behemoth.json").read_text())
  assert provenance["delta"] == str(tmp_path / "edit" / "deltas" / "batch")
  tokens_BxT = np.random.default_rng(1).integers(0, cfg.vocab_size, (3, 20))
  ours = np.asarray(model.forward(params, jnp.asarray(tokens_BxT, jnp.int32), cfg, delta=delta))
  unedited = np.asarray(model.forward(params, jnp.asarray(tokens_BxT, jnp.int32), cfg))
  with torch.no_grad():
    theirs = _hf_model(out)(torch.as_tensor(tokens_BxT)).logits.numpy()
  assert np.abs(ours - unedited).max() > 1e-2  # the delta matters
  assert np.abs(ours - theirs).max() <= 1e-4


def test_binary_refuses_a_delta_from_another_model(tanh_model, tmp_path):
  from behemoth_jax.model import deltas
  pretrain, _, params, cfg, _ = tanh_model
  other = model.init_params(jax.random.key(0), dataclasses.replace(cfg, width=2 * cfg.width))
  deltas.save(tmp_path / "delta", _random_lora(other))
  r = _run([f"--pretrained={pretrain}", f"--delta={tmp_path / 'delta'}", f"--output={tmp_path / 'hf'}"])
  _one_line_error(r, "--delta", "another model")
  assert not (tmp_path / "hf").exists()


def test_a_lora_edit_exported_with_its_delta_gives_the_edited_answer_in_transformers(tanh_model, tmp_path):
  from behemoth_jax.edit import edit_rows, methods, modes
  from behemoth_jax.model import deltas
  from data_gen.edit_sets import edits
  pretrain, unedited_out, params, cfg, dataset = tanh_model
  edit_set = edits.build_edit_set(dataset.graph, edits.EditConfig(num_ft_overrides=1), seed=0)
  hp = methods.EditHParams(method="lora", targets="mlp_down", rank=4, learning_rate=3e-2, steps=40)
  delta, _ = modes.train_batch(params, edit_rows.train_set(edit_set, dataset), hp, cfg,
                                 methods.resolve_paths(params, hp), seed=0)
  edited = next(s for s in edit_rows.eval_splits(edit_set, dataset) if s.name == "edited")
  prompt_NxP, after_NxA = edited.probes["exact_match"]
  exact_match = modes.make_exact_match(cfg)
  assert np.all(exact_match(params, delta, prompt_NxP, after_NxA)), "the edit took, in our model"
  assert not np.any(exact_match(params, None, prompt_NxP, after_NxA))
  deltas.save(tmp_path / "edit" / "deltas" / "composed", delta)
  r = _run([f"--pretrained={pretrain}", f"--delta={tmp_path / 'edit'}", f"--output={tmp_path / 'hf'}"])
  assert r.returncode == 0, r.stderr
  A = after_NxA.shape[1]
  np.testing.assert_array_equal(_greedy(_hf_model(tmp_path / "hf"), prompt_NxP, A), after_NxA)
  assert not np.any(np.all(_greedy(_hf_model(unedited_out), prompt_NxP, A) == after_NxA, axis=1))


@pytest.fixture(scope="module")
def independent_edit_run(tanh_model, tmp_path_factory):
  """An experiments.edit work dir of 4 independent LoRA edits: deltas/chunk_000000 stacks 4 deltas."""
  workdir = tmp_path_factory.mktemp("edit") / "run"
  cmd = [sys.executable, "-m", "experiments.edit", "--config=experiments/configs/edit.py:lora,tiny",
         f"--pretrained={tanh_model[0]}", f"--workdir={workdir}"]
  r = subprocess.run(cmd, cwd=REPO, env=SUBPROCESS_ENV, capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr
  return workdir


def test_export_of_an_independent_edit_run_merges_the_chosen_edit(tanh_model, independent_edit_run, tmp_path):
  import torch
  from behemoth_jax.model import deltas
  pretrain, _, params, cfg, _ = tanh_model
  stack = deltas.load(independent_edit_run / "deltas" / "chunk_000000")
  r = _run([f"--pretrained={pretrain}", f"--delta={independent_edit_run}", "--edit_index=2",
            f"--output={tmp_path / 'hf'}"])
  assert r.returncode == 0, r.stderr
  assert json.loads((tmp_path / "hf" / "behemoth.json").read_text())["edit_index"] == 2
  tokens_BxT = jnp.asarray(np.random.default_rng(2).integers(0, cfg.vocab_size, (2, 24)), jnp.int32)
  with torch.no_grad():
    theirs = _hf_model(tmp_path / "hf")(torch.as_tensor(np.array(tokens_BxT))).logits.numpy()
  for i in range(4):
    ours = np.asarray(model.forward(params, tokens_BxT, cfg, delta=jax.tree.map(lambda x: x[i], stack)))
    assert (np.abs(ours - theirs).max() <= 1e-4) == (i == 2), i


@pytest.mark.parametrize("args,needles", [
    ([], ("--edit_index", "independent-mode run")),
    (["--edit_index=4"], ("--edit_index", "must be in [0, 3], got 4")),
])
def test_binary_refuses_an_independent_run_without_a_valid_edit_index(tanh_model, independent_edit_run,
                                                                      tmp_path, args, needles):
  r = _run([f"--pretrained={tanh_model[0]}", f"--delta={independent_edit_run}", *args,
            f"--output={tmp_path / 'hf'}"])
  _one_line_error(r, *needles)
  assert not (tmp_path / "hf").exists()


def test_binary_refuses_an_edit_index_for_a_single_delta(tanh_model, tmp_path):
  from behemoth_jax.model import deltas
  deltas.save(tmp_path / "delta", _random_lora(tanh_model[2]))
  r = _run([f"--pretrained={tanh_model[0]}", f"--delta={tmp_path / 'delta'}", "--edit_index=0",
            f"--output={tmp_path / 'hf'}"])
  _one_line_error(r, "--edit_index", "is one delta")
  r = _run([f"--pretrained={tanh_model[0]}", "--edit_index=0", f"--output={tmp_path / 'hf'}"])
  _one_line_error(r, "--edit_index", "needs --delta")
