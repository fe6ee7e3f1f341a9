"""The default policy: a tiny Qwen2-architecture causal LM built from a config in code (no download).

:func:`default_model_config` fixes the architecture (Qwen2: RMSNorm, SwiGLU MLP, rotary positions,
grouped-query attention, SDPA attention kernel, tied embeddings). It is deliberately small
(~0.3 M parameters) so that a warm start plus an RL run fit in minutes on 2 CPU cores; every size can be
overridden. :func:`load_policy` loads *any* ``transformers`` causal LM plus its tokenizer from a local
directory, so real checkpoints drop in unchanged.

Dtypes: a checkpoint keeps the dtype it was saved in. :func:`checkpoint_dtype` reads it from the saved
``config.json`` (``dtype``, or ``torch_dtype`` of older ``transformers``); :func:`load_policy` loads in it
by default (inference, evaluation), the trainer loads float32 master weights (``dtype=torch.float32``) and
:func:`save_policy` writes the final model back in the checkpoint's dtype (a bf16 checkpoint stays bf16,
half the size of float32).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

from rundir.files import atomic_write_json

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


def checkpoint_dtype(path: str | os.PathLike) -> torch.dtype:
    """The floating-point dtype a ``save_pretrained`` directory was saved in.

    Read from ``config.json``'s ``dtype`` (``torch_dtype`` in ``transformers`` < 4.56); float32 when the
    config names none (what ``transformers`` assumed before it recorded dtypes).

    Raises:
      ValueError: no ``config.json`` in ``path``, or a dtype that is not a torch floating-point dtype.
    """
    cfg_path = Path(path) / "config.json"
    if not cfg_path.is_file():
        raise ValueError(f"{path} is not a saved model directory (no config.json)")
    try:
        cfg = json.loads(cfg_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{cfg_path} is not readable JSON ({err})") from None
    name = cfg.get("dtype") or cfg.get("torch_dtype") or "float32"
    dtype = getattr(torch, str(name).removeprefix("torch."), None) if isinstance(name, str) else None
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"{cfg_path}: dtype {name!r} is not a torch floating-point dtype")
    return dtype


def load_policy(path: str | os.PathLike, *, device: str | torch.device = "cpu", dtype=None):
    """Load a causal LM and its tokenizer saved with ``save_pretrained`` in ``path`` (never downloads).

    Args:
      path: the model directory; device: where the model goes.
      dtype: the parameters' dtype; None = the checkpoint's own (:func:`checkpoint_dtype`; for inference
        and evaluation), ``torch.float32`` for training (float32 master weights).
    Returns:
      ``(model, tokenizer)``; the tokenizer gets ``padding_side='left'`` and a pad token (eos if it has none).
    """
    path = Path(path)
    if not (path / "config.json").is_file():
        raise ValueError(f"{path} is not a saved model directory (no config.json)")
    if dtype is None:
        dtype = checkpoint_dtype(path)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a torch floating-point dtype or None, got {dtype!r}")
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    tok.padding_side = "left"
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=dtype,
                                                 attn_implementation="sdpa")
    return model.to(device), tok


def save_policy(model, tokenizer, path: str | os.PathLike, *, dtype: torch.dtype | None = None) -> Path:
    """``save_pretrained`` model and tokenizer into ``path`` (safetensors).

    Args:
      dtype: the dtype to write the weights in (and to record in ``config.json``); None = the model's own.
        The model itself is left as it is: the weights are cast copies (tied weights stay tied), so
        float32 master weights can be saved as bf16 while training goes on.
    """
    if dtype is not None and (not isinstance(dtype, torch.dtype) or not dtype.is_floating_point):
        raise ValueError(f"dtype must be a torch floating-point dtype or None, got {dtype!r}")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if dtype is None or dtype == model.dtype:
        model.save_pretrained(path)
    else:
        cast: dict[int, torch.Tensor] = {}  # one cast per storage, so tied weights stay shared
        state = {}
        for k, v in model.state_dict().items():
            if v.is_floating_point():
                key = v.data_ptr()
                if key not in cast:
                    cast[key] = v.detach().to(dtype)
                v = cast[key]
            state[k] = v
        model.save_pretrained(path, state_dict=state)
        cfg_path = path / "config.json"  # save_pretrained records the model's dtype: record the saved one
        cfg = json.loads(cfg_path.read_text())
        name = str(dtype).removeprefix("torch.")
        keys = [k for k in ("dtype", "torch_dtype") if k in cfg] or ["dtype"]
        mode = cfg_path.stat().st_mode & 0o777
        atomic_write_json(cfg_path, {**cfg, **{k: name for k in keys}})
        os.chmod(cfg_path, mode)  # the temporary file's 0600 would hide the config from other users
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
