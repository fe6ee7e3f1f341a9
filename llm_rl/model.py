"""The default policy: a tiny Qwen2-architecture causal LM built from a config in code (no download).

:func:`default_model_config` fixes the architecture (Qwen2: RMSNorm, SwiGLU MLP, rotary positions,
grouped-query attention, SDPA attention kernel, tied embeddings). It is deliberately small
(~0.3 M parameters) so that a warm start plus an RL run fit in minutes on 2 CPU cores; every size can be
overridden. :func:`load_policy` loads *any* ``transformers`` causal LM plus its tokenizer from a local
directory, so real checkpoints drop in unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

from .tokenizer import build_char_tokenizer


def default_model_config(vocab_size: int, *, hidden_size: int = 96, num_layers: int = 3, num_heads: int = 4,
                         num_kv_heads: int = 2, intermediate_size: int = 256, max_positions: int = 128,
                         ) -> Qwen2Config:
    """The default Qwen2 configuration (SDPA attention, tied input/output embeddings).

    Args:
      vocab_size: tokenizer vocabulary size (> 0).
      hidden_size, num_layers, num_heads, num_kv_heads, intermediate_size, max_positions: sizes;
        ``hidden_size`` must be divisible by ``num_heads`` and ``num_heads`` by ``num_kv_heads``.
    """
    for name, v in (("vocab_size", vocab_size), ("hidden_size", hidden_size), ("num_layers", num_layers),
                    ("num_heads", num_heads), ("num_kv_heads", num_kv_heads),
                    ("intermediate_size", intermediate_size), ("max_positions", max_positions)):
        if not isinstance(v, int) or v <= 0:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if hidden_size % num_heads or num_heads % num_kv_heads:
        raise ValueError("hidden_size must be divisible by num_heads, and num_heads by num_kv_heads")
    cfg = Qwen2Config(
        vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=intermediate_size,
        num_hidden_layers=num_layers, num_attention_heads=num_heads, num_key_value_heads=num_kv_heads,
        max_position_embeddings=max_positions, tie_word_embeddings=True, use_cache=True,
        rms_norm_eps=1e-6, rope_theta=10000.0, attention_dropout=0.0,
    )
    cfg._attn_implementation = "sdpa"
    return cfg


def build_default_policy(seed: int = 0, **sizes):
    """A freshly initialised default model and the character tokenizer.

    Args:
      seed: initialisation seed (weights depend only on it; the global RNG is restored afterwards).
      **sizes: overrides for :func:`default_model_config`.
    Returns:
      ``(model, tokenizer)`` with the model in train mode, float32, on CPU.
    """
    tok = build_char_tokenizer()
    cfg = default_model_config(len(tok), **sizes)
    cfg.pad_token_id, cfg.bos_token_id, cfg.eos_token_id = (
        tok.pad_token_id, tok.bos_token_id, tok.eos_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(cfg)
    return model, tok


def load_policy(path: str | os.PathLike, *, device: str | torch.device = "cpu", dtype=torch.float32):
    """Load a causal LM and its tokenizer saved with ``save_pretrained`` in ``path`` (never downloads).

    Returns:
      ``(model, tokenizer)``; the tokenizer gets ``padding_side='left'`` and a pad token (eos if it has none).
    """
    path = Path(path)
    if not (path / "config.json").is_file():
        raise ValueError(f"{path} is not a saved model directory (no config.json)")
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    tok.padding_side = "left"
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=dtype,
                                                 attn_implementation="sdpa")
    return model.to(device), tok


def save_policy(model, tokenizer, path: str | os.PathLike) -> Path:
    """``save_pretrained`` model and tokenizer into ``path`` (safetensors)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def resolve_device(device: str) -> torch.device:
    """``'auto'`` -> cuda if available else cpu; otherwise ``torch.device(device)``.

    Raises:
      ValueError: an unknown device string, or a CUDA device on a machine without one (or with fewer).
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"invalid device {device!r}; use auto, cpu, cuda or cuda:N") from err
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0 or (dev.index is not None and dev.index >= n):
            raise ValueError(f"device {device!r} is not available here ({n} CUDA device(s)); "
                             "use --device cpu or auto")
    return dev


#: the size knobs of :func:`default_model_config` (``PretrainConfig.model_sizes`` / ``--model-size``)
MODEL_SIZE_KEYS = ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "intermediate_size",
                   "max_positions")


def check_model_sizes(sizes: dict) -> dict:
    """``sizes`` if every key is one of :data:`MODEL_SIZE_KEYS` and the sizes make a valid model
    (positive ints, heads dividing the hidden size); ``ValueError`` naming the bad key or value otherwise."""
    if not isinstance(sizes, dict):
        raise ValueError(f"model sizes must be a dict, got {type(sizes).__name__}")
    unknown = sorted(set(sizes) - set(MODEL_SIZE_KEYS))
    if unknown:
        raise ValueError(f"unknown model size(s) {unknown}; valid keys: {', '.join(MODEL_SIZE_KEYS)}")
    default_model_config(1, **sizes)  # validates the values; builds no model
    return sizes
