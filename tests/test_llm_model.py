"""Default model, character tokenizer, KV-cache sampling and re-scoring of llm_rl."""

import json

import pytest
import torch
import transformers

from theory.advantages import group_advantages, zero_variance_groups
from llm_rl.model import build_default_policy, default_model_config, load_policy, save_policy
from llm_rl.rollout import concat_rollouts, encode_prompts, generate, score, sequence_entropy
from llm_rl.tokenizer import ALPHABET, build_char_tokenizer, warn_unknown_characters

transformers.utils.logging.disable_progress_bar()
SIZES = dict(hidden_size=32, num_layers=2, num_heads=2, num_kv_heads=1, intermediate_size=64,
             max_positions=64)


@pytest.fixture(scope="module")
def policy():
    return build_default_policy(seed=0, **SIZES)


def test_tokenizer_roundtrip_and_reload(tmp_path):
    tok = build_char_tokenizer()
    text = "12+7-5=19#14 (3*4)/2"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text) and tok.decode(ids) == text
    assert len(tok) == len(ALPHABET) + 4 and tok.pad_token_id == 0 and tok.padding_side == "left"
    tok.save_pretrained(tmp_path)
    tok2 = transformers.AutoTokenizer.from_pretrained(tmp_path, local_files_only=True)
    assert tok2(text, add_special_tokens=False)["input_ids"] == ids
    assert tok2.decode(ids + [tok2.eos_token_id], skip_special_tokens=True) == text
    with pytest.raises(ValueError):
        build_char_tokenizer("aa")


def test_unknown_characters_warn():
    tok = build_char_tokenizer()
    with pytest.warns(UserWarning, match=r"1 of 2 prompts .*'é=\?'"):
        assert warn_unknown_characters(tok, ["1+2=", "é=?"]) == 1
    assert warn_unknown_characters(tok, ["1+2="]) == 0


def test_model_is_qwen2_sdpa_and_reloads(policy, tmp_path):
    model, tok = policy
    assert type(model).__name__ == "Qwen2ForCausalLM" and model.config._attn_implementation == "sdpa"
    save_policy(model, tok, tmp_path / "m")
    model2, tok2 = load_policy(tmp_path / "m")
    x = torch.randint(4, len(tok), (2, 7))
    torch.testing.assert_close(model(input_ids=x).logits, model2(input_ids=x).logits)
    assert json.loads((tmp_path / "m" / "config.json").read_text())["model_type"] == "qwen2"
    with pytest.raises(ValueError):
        default_model_config(10, hidden_size=30, num_heads=4)
    with pytest.raises(ValueError, match="not a saved model"):
        load_policy(tmp_path / "nothing")


def test_build_is_seeded_and_leaves_global_rng(policy):
    state = torch.get_rng_state()
    a, _ = build_default_policy(seed=3, **SIZES)
    assert torch.equal(state, torch.get_rng_state())
    b, _ = build_default_policy(seed=3, **SIZES)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def _greedy_reference(model, tok, prompt, n):
    ids, _ = encode_prompts(tok, [prompt])
    out = []
    for _ in range(n):
        nxt = int(model(input_ids=ids).logits[0, -1].argmax())
        out.append(nxt)
        if nxt == tok.eos_token_id:
            break
        ids = torch.cat([ids, torch.tensor([[nxt]])], 1)
    return out


def test_kv_cache_greedy_matches_full_recompute_with_left_padding(policy):
    model, tok = policy
    prompts = ["1+2=", "13-4+5=", "7="]
    ro = generate(model, tok, prompts, max_new_tokens=6, greedy=True)
    for i, p in enumerate(prompts):
        ref = _greedy_reference(model, tok, p, 6)
        got = ro.response_ids[i][ro.response_mask[i]].tolist()
        assert got == ref


def test_sampling_reproducible_and_scoring_consistent(policy):
    model, tok = policy
    prompts = ["1+2=", "13-4+5=", "7="] * 2
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    r1 = generate(model, tok, prompts, max_new_tokens=8, generator=g1)
    r2 = generate(model, tok, prompts, max_new_tokens=8, generator=g2)
    assert torch.equal(r1.input_ids, r2.input_ids) and r1.texts == r2.texts
    lp, ent = score(model, r1.input_ids, r1.attention_mask, r1.prompt_len, with_entropy=True)
    # row-wise scoring (no padding) gives the same log-probs: left padding is invisible
    for i in range(len(prompts)):
        single = concat_rollouts([(r1, [i])], tok.pad_token_id)
        lp_i = score(model, single.input_ids, single.attention_mask, single.prompt_len)
        n = int(r1.response_mask[i].sum())
        torch.testing.assert_close(lp[i, :n], lp_i[0, :n], rtol=1e-4, atol=1e-5)
    assert (ent[r1.response_mask] > 0).all() and (lp[r1.response_mask] <= 0).all()
    # chunking does not change anything
    lp2 = score(model, r1.input_ids, r1.attention_mask, r1.prompt_len, chunk_rows=3)
    torch.testing.assert_close(lp, lp2)


def test_sequence_entropy_is_mean_of_response_means():
    ent = torch.tensor([[1.0, 3.0, 9.0], [2.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, False], [True, False, False]])
    assert float(sequence_entropy(ent, mask)) == pytest.approx((2.0 + 2.0) / 2)


def test_group_advantages():
    r = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0])
    a = group_advantages(r, 4)
    assert a[:4].sum().abs() < 1e-6 and a[0] > 0 and torch.all(a[4:] == 0)
    torch.testing.assert_close(group_advantages(r, 4, "drgrpo")[:4],
                               torch.tensor([0.75, -0.25, -0.25, -0.25]))
    assert zero_variance_groups(r, 4).tolist() == [False, True]
    with pytest.raises(ValueError, match="choose one of"):
        group_advantages(r, 4, "ppo")
    with pytest.raises(ValueError):
        group_advantages(r, 3)


def _splitmix64_reference(state: int, n: int) -> list[float]:
    """Plain-int splitmix64 (Steele et al. 2014): the uniforms row_uniforms must reproduce."""
    m = (1 << 64) - 1

    def mix(z):
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
        return z ^ (z >> 31)

    key = mix(state & m)  # row_keys applies the output function once to the seed
    return [(mix((key + (t + 1) * 0x9E3779B97F4A7C15) & m) >> 11) * 2.0**-53 for t in range(n)]


def test_row_uniforms_are_splitmix64_and_batch_independent():
    from llm_rl.rollout import row_keys, row_uniforms

    seeds = [0, 1, 2**63 - 1, 123456789012345]
    keys = row_keys(seeds)
    for t in range(3):
        u = row_uniforms(keys, t)
        for i, s in enumerate(seeds):
            assert u[i].item() == _splitmix64_reference(s, t + 1)[t]
    assert row_uniforms(row_keys(seeds[2:3]), 1).item() == row_uniforms(keys, 1)[2].item()
    u = row_uniforms(row_keys(list(range(20000))), 0)
    assert 0 <= float(u.min()) and float(u.max()) < 1 and abs(float(u.mean()) - 0.5) < 0.01


def test_inverse_cdf_sampler_matches_probabilities():
    from llm_rl.rollout import row_keys, row_uniforms, sample_inverse_cdf

    probs = torch.tensor([0.5, 0.0, 0.2, 0.3])
    n = 40000
    tok = sample_inverse_cdf(probs.expand(n, 4), row_uniforms(row_keys(list(range(n))), 0))
    freq = torch.bincount(tok, minlength=4).double() / n
    sd = (probs.double() * (1 - probs.double()) / n).sqrt()
    assert freq[1] == 0 and bool(((freq - probs.double()).abs() <= 5 * sd + 1e-12).all()), freq
