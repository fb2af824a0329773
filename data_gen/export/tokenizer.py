"""HF `tokenizers` / LitGPT tokenizer files for a vocabulary.

A WordLevel model over the words of `Vocab.words()`: every word is one token whose id is the number it
spells, which is exactly the original's intent (its GPT-NeoX BPE merges existed only to make each 4-digit
word one token). WordLevel has no 10,000-word ceiling and needs no reserved merge prefixes.
"""

from __future__ import annotations

import json
import pathlib

from data_gen.world.vocab import EOT, PAD, RESERVED, Vocab


def tokenizer_json(vocab: Vocab) -> dict:
  special = [{"id": i, "content": RESERVED[i], "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i in (EOT, PAD)]
  return {
      "version": "1.0", "truncation": None, "padding": None, "added_tokens": special, "normalizer": None,
      # Words are space-separated; "." attaches to the word before it in the corpus spelling.
      "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
          {"type": "WhitespaceSplit"},
          {"type": "Split", "pattern": {"String": "."}, "behavior": "Isolated", "invert": False}]},
      "post_processor": None, "decoder": None,
      "model": {"type": "WordLevel", "vocab": {w: i for i, w in enumerate(vocab.words())},
                "unk_token": RESERVED[PAD]},
  }


def tokenizer_config_json(vocab: Vocab) -> dict:
  return {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": RESERVED[EOT],
          "eos_token": RESERVED[EOT], "pad_token": RESERVED[PAD], "unk_token": RESERVED[PAD],
          "add_bos_token": False, "add_eos_token": False, "model_max_length": 2048,
          "vocab_size": vocab.size}


def write_tokenizer(directory, vocab: Vocab) -> None:
  d = pathlib.Path(directory)
  (d / "tokenizer.json").write_text(json.dumps(tokenizer_json(vocab)))
  (d / "tokenizer_config.json").write_text(json.dumps(tokenizer_config_json(vocab), indent=1) + "\n")
