"""Interop: Hugging Face GPT-NeoX checkpoints in and out, so PyTorch tools run on our models.
Writes safetensors without torch; reads an HF folder back into our parameters.
Imports model/ only.

Entry points: hf.save, hf.load_hf.
"""
