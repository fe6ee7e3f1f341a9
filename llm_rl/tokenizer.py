"""Character-level tokenizer for the default model, built with the ``tokenizers`` library.

Every character of :data:`ALPHABET` is one token; special tokens are ``<pad>`` (id 0), ``<bos>``,
``<eos>`` and ``<unk>``. The ``tokenizers.Tokenizer`` is a BPE model with an empty merge list (so it
never merges characters) and a ``Fuse`` decoder (so decoding concatenates characters without spaces).
It is wrapped as a ``transformers.PreTrainedTokenizerFast`` and therefore saves with
``save_pretrained`` and reloads with ``AutoTokenizer.from_pretrained`` like any Hub checkpoint.
"""

from __future__ import annotations

import string

from tokenizers import Tokenizer, decoders, models
from transformers import PreTrainedTokenizerFast

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)
#: every printable character the synthetic tasks use (digits, operators, punctuation, letters, space)
ALPHABET = string.digits + "+-*/()=,.:;#?> " + string.ascii_lowercase + string.ascii_uppercase + "\\{}[]_^|"


def build_char_tokenizer(alphabet: str = ALPHABET) -> PreTrainedTokenizerFast:
    """Build the character-level ``PreTrainedTokenizerFast``.

    Args:
      alphabet: the characters that get their own token (duplicates are an error). Characters outside
        it encode to ``<unk>``.
    Returns:
      A fast tokenizer with ``pad/bos/eos/unk`` set, ``padding_side='left'`` (decoder-only generation)
      and vocabulary size ``len(alphabet) + 4``.
    """
    if not isinstance(alphabet, str) or not alphabet:
        raise ValueError("alphabet must be a non-empty string")
    if len(set(alphabet)) != len(alphabet):
        raise ValueError("alphabet contains duplicate characters")
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for ch in alphabet:
        vocab[ch] = len(vocab)
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK))
    core.decoder = decoders.Fuse()
    core.add_special_tokens(list(SPECIAL_TOKENS))
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token=PAD, bos_token=BOS, eos_token=EOS, unk_token=UNK,
        padding_side="left", clean_up_tokenization_spaces=False,
    )
    tok.model_max_length = 512
    return tok


def warn_unknown_characters(tokenizer, texts: list[str]) -> int:
    """Warn once when some ``texts`` contain characters the tokenizer maps to its unknown token (the model
    cannot tell them apart, e.g. non-ASCII text given to the character tokenizer); return how many do."""
    import warnings

    unk = getattr(tokenizer, "unk_token_id", None)
    if unk is None or not texts:
        return 0
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    bad = [t for t, i in zip(texts, ids) if unk in i]
    if bad:
        warnings.warn(f"{len(bad)} of {len(texts)} prompts contain characters the tokenizer encodes as "
                      f"{tokenizer.unk_token} (first: {bad[0][:60]!r})", stacklevel=2)
    return len(bad)
