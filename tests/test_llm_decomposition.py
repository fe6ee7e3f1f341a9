"""The exact split of a probed state's entropy change into own / cross / history (llm_rl.decomposition):
exact against Theorem 1 where the network kernel is the identity, closed (own + cross + history =
linearised) on a real tiny network with AdamW history, equal to a brute-force own gradient, and
unaffected by bf16 autocast of the training step."""

import copy
from types import SimpleNamespace

import pytest
import torch

from llm_rl import decomposition as dec
from llm_rl.diagnostics import StepProbe
from llm_rl.model import build_default_policy
from llm_rl.rollout import score

F64 = torch.float64


class OneHotLM(torch.nn.Module):
    """A bigram "language model" with one-hot features: the logits at a position are a free row
    ``W[token]`` of the current token, so a state's parameters are its own row (the kernel J J^T is the
    identity) and states with distinct last tokens share nothing. HF-style call signature."""

    def __init__(self, vocab: int, seed: int = 0):
        super().__init__()
        self.vocab = vocab
        self.head = torch.nn.Linear(vocab, vocab, bias=False)
        with torch.no_grad():
            self.head.weight.copy_(torch.randn(vocab, vocab, generator=torch.Generator().manual_seed(seed)))

    def get_output_embeddings(self):
        return self.head

    def forward(self, input_ids, attention_mask=None, position_ids=None, use_cache=False, logits_to_keep=0):
        x = torch.nn.functional.one_hot(input_ids, self.vocab).float()
        if logits_to_keep:
            x = x[:, -logits_to_keep:]
        return SimpleNamespace(logits=self.head(x))


def _batch(vocab, groups, group_size, resp_len, model, seed=0, bos=0):
    """Prompts [BOS, k] with distinct k per group, responses sampled from the model; returns ids, mask,
    response mask, P, advantages [B, R] (group-normalised random rewards) and group ids [B]."""
    g = torch.Generator().manual_seed(seed)
    P = 2
    ids = torch.full((groups * group_size, P + resp_len), bos, dtype=torch.long)
    ids[:, 1] = torch.arange(1, groups + 1).repeat_interleave(group_size)
    with torch.no_grad():
        for t in range(resp_len):
            z = model(input_ids=ids[:, :P + t]).logits[:, -1]
            ids[:, P + t] = torch.multinomial(torch.softmax(z, -1), 1, generator=g).squeeze(-1)
    rewards = torch.randn(groups, group_size, generator=g)
    adv = ((rewards - rewards.mean(1, keepdim=True)) / (rewards.std(1, keepdim=True) + 1e-6)).reshape(-1)
    rmask = torch.ones(groups * group_size, resp_len, dtype=torch.bool)
    return ids, torch.ones_like(ids), rmask, P, adv[:, None].expand(-1, resp_len).contiguous(), \
        torch.arange(groups).repeat_interleave(group_size)


def _diagnosed_step(model, opt, ids, am, rmask, P, adv, groups, *, grad_clip=0.0, autocast=None,
                    max_states=64):
    """One policy-gradient step (token-mean loss −(1/N) Σ A log π at ratio 1) run through the probe's
    protocol, as llm_rl.update does it; returns (probe, summary, per-state)."""
    w = rmask.double() / rmask.sum()
    probe = StepProbe(model, ids, am, rmask, P, adv, groups, max_states=max_states,
                      generator=torch.Generator().manual_seed(0), weights=w, decompose=True)
    opt.zero_grad(set_to_none=True)
    with probe.capture():
        probe.set_rows(torch.arange(ids.shape[0]))
        with autocast or torch.autocast("cpu", enabled=False):
            lp = score(model, ids, am, P).float()
        (-(w * adv * lp)[rmask].sum()).backward()
    clip = 1.0
    if grad_clip:
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        clip = min(1.0, grad_clip / (float(norm) + 1e-6))
    probe.before_step(model, opt, clip)
    opt.step()
    summary, per_state = probe.finish(model)
    return probe, summary, per_state


def test_identity_kernel_own_term_is_theorem1_and_cross_is_zero_for_sgd():
    vocab, lr = 12, 0.3
    model = OneHotLM(vocab)
    ids, am, rmask, P, adv, groups = _batch(vocab, groups=8, group_size=6, resp_len=1, model=model)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    _, summary, ps = _diagnosed_step(model, opt, ids, am, rmask, P, adv, groups)
    assert summary["diag/states"] == 8 and summary["diag/eta_thm1"] == lr
    scale = ps["dH_own"].abs().max()
    assert scale > 1e-4
    assert torch.allclose(ps["dH_own"], ps["dH_thm1"], atol=1e-6 * scale, rtol=1e-5)  # REINFORCE form
    assert ps["dH_cross"].abs().max() <= 1e-6 * scale and ps["dH_hist"].abs().max() == 0
    assert torch.allclose(ps["dH_lin"], ps["dH_own"], atol=1e-6 * scale, rtol=1e-5)
    assert summary["diag/share_own"] > 0.999 and summary["diag/recon_err"] < 1e-5


def test_terms_close_on_a_real_network_with_adamw_history_and_own_matches_brute_force():
    torch.manual_seed(0)
    model, tok = build_default_policy(seed=0, hidden_size=32, num_layers=2, num_heads=2, num_kv_heads=1,
                                      intermediate_size=64, max_positions=32)
    model.eval()
    ids, am, rmask, P, adv, groups = _batch(model.config.vocab_size, groups=4, group_size=4, resp_len=5,
                                            model=model, bos=tok.bos_token_id)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    _diagnosed_step(model, opt, ids, am, rmask, P, adv, groups, grad_clip=1.0)  # builds Adam history
    before = copy.deepcopy(model)
    probe, summary, ps = _diagnosed_step(model, opt, ids, am, rmask, P, adv, groups, grad_clip=0.05)
    assert probe.lin.clip_coef < 1.0  # clipping active: the own term must carry the factor
    lin, total = ps["dH_lin"], ps["dH_own"] + ps["dH_cross"] + ps["dH_hist"]
    scale = lin.abs().max()
    assert (lin - total).abs().max() <= 1e-4 * scale, "own + cross + history must equal the linearised ΔH"
    assert summary["diag/recon_err"] < 1e-4 and summary["diag/sum_gap"] < 1e-4
    assert ps["dH_hist"].abs().max() > 0.01 * scale  # momentum and weight decay are present
    # brute force: the gradient of the loss restricted to the tokens sampled at state s
    s = int(torch.bincount(probe.p["state_index"]).argmax())  # the state with the most samples
    at_s = probe.p["state_of"] == s
    w = rmask.double() / rmask.sum()
    params = list(before.parameters())
    row, col = int(probe.p["state_rows"][s]), int(probe.p["state_cols"][s])
    with dec._true_embedding_gradients(before):
        lp = score(before, ids, am, P).float()
        g_own = torch.autograd.grad(-(w * adv * lp)[at_s].sum(), params)
        z = score.__globals__["response_logits"](before, ids[row:row + 1], am[row:row + 1], P)[0, col]
        g_h = torch.autograd.grad(-(torch.softmax(z, -1) * torch.log_softmax(z, -1)).sum(), params)
    own = -probe.lin.clip_coef * sum(float((gh.double() * pre * go.double()).sum())
                                     for gh, pre, go in zip(g_h, probe.lin.precond, g_own))
    assert own == pytest.approx(float(ps["dH_own"][s]), rel=1e-4, abs=1e-9 * float(scale))
    # ΔH_lin from the kept entropy gradients (reverse mode) equals forward mode (jvp) along the same step
    dz = dec.linearised_change(model, probe.lin, ids, am, P, probe.p["state_rows"], probe.p["state_cols"])
    logp = torch.log_softmax(probe.z_old.double(), -1)
    ent = -(logp.exp() * logp).sum(-1, keepdim=True)
    lin_fwd = -((logp.exp() * (logp + ent)) * dz.double()).sum(-1)
    assert probe.grad_entropy is not None
    assert (lin_fwd - lin).abs().max() <= 1e-4 * scale


def test_diagnosed_entropy_change_is_unaffected_by_bf16_training():
    """The probe runs in float32 outside autocast: after a bf16-autocast step its ΔH equals a float64
    recomputation from the weights before and after to float32 rounding; a probe run under the same
    autocast (what the trainer did before) misses it by far more."""
    model, _ = build_default_policy(seed=1, hidden_size=32, num_layers=2, num_heads=2, num_kv_heads=1,
                                    intermediate_size=64, max_positions=32)
    model.eval()
    ids, am, rmask, P, adv, groups = _batch(model.config.vocab_size, groups=4, group_size=4, resp_len=5,
                                            model=model, seed=2)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    bf16 = torch.autocast("cpu", dtype=torch.bfloat16)
    probe, _, ps = _diagnosed_step(model, opt, ids, am, rmask, P, adv, groups, autocast=bf16)

    def entropies(params, autocast=None):
        m = copy.deepcopy(model).double()
        with torch.no_grad():
            for q, v in zip(m.parameters(), params):
                q.copy_(v.double())
        from llm_rl.diagnostics import state_logits
        z = state_logits(m if autocast is None else copy.deepcopy(model), ids, am, P, probe.p["state_rows"],
                         probe.p["state_cols"], autocast=autocast).double()
        lp = torch.log_softmax(z, -1)
        return -(lp.exp() * lp).sum(-1)

    ref = entropies([q.detach() for q in model.parameters()]) - entropies(probe.lin.before)
    err = float((ps["dH_obs"] - ref).abs().sum() / ref.abs().sum())
    assert err < 1e-2, err
    with torch.no_grad():  # the same measurement taken under bf16 autocast
        m_before = copy.deepcopy(model)
        for q, v in zip(m_before.parameters(), probe.lin.before):
            q.copy_(v)
        from llm_rl.diagnostics import state_logits
        za = state_logits(m_before, ids, am, P, probe.p["state_rows"], probe.p["state_cols"], autocast=bf16)
        zb = state_logits(model, ids, am, P, probe.p["state_rows"], probe.p["state_cols"], autocast=bf16)
    ha, hb = (-(torch.log_softmax(z.double(), -1).exp() * torch.log_softmax(z.double(), -1)).sum(-1)
              for z in (za, zb))
    err_autocast = float(((hb - ha) - ref).abs().sum() / ref.abs().sum())
    assert err_autocast > 10 * err, (err_autocast, err)


def test_linearise_step_rejects_what_it_cannot_split():
    model = OneHotLM(4)
    for q in model.parameters():
        q.grad = torch.zeros_like(q)
    with pytest.raises(ValueError, match="supports AdamW, Adam and SGD"):
        dec.linearise_step(torch.optim.RMSprop(model.parameters()), list(model.parameters()), 1.0)
    with pytest.raises(ValueError, match="amsgrad"):
        dec.linearise_step(torch.optim.AdamW(model.parameters(), amsgrad=True), list(model.parameters()), 1.0)
    with pytest.raises(ValueError, match="clip_coef"):
        dec.linearise_step(torch.optim.SGD(model.parameters(), lr=0.1), list(model.parameters()), 0.0)
    with pytest.raises(ValueError, match="state_of"):
        dec.LogitGradCapture(model, torch.zeros(3, dtype=torch.long), 1)


def test_probe_states_groups_every_position_by_its_exact_prefix():
    from llm_rl.diagnostics import probe_states

    g = torch.Generator().manual_seed(0)
    P, R, B = 3, 5, 12
    ids = torch.randint(1, 4, (B, P + R), generator=g)  # a 3-token alphabet: many shared prefixes
    ids[:, :P] = ids[torch.arange(B) // 4, :P]  # 3 prompts x 4 responses
    ids[::4, 0] = 0  # some left padding
    mask = torch.rand(B, R, generator=g) < 0.9
    prefix = {(r, t): tuple(ids[r, :P + t].tolist()) for r in range(B) for t in range(R) if mask[r, t]}
    for cap in (1000, 7):
        p = probe_states(ids, mask, P, max_states=cap, generator=torch.Generator().manual_seed(1))
        n = len(p["state_rows"])
        assert n == min(cap, len(set(prefix.values())))
        reps = [prefix[(int(r), int(t))] for r, t in zip(p["state_rows"], p["state_cols"])]
        assert len(set(reps)) == n  # distinct states
        got = {(int(r), int(t)): int(s) for r, t, s in zip(p["rows"], p["cols"], p["state_index"])}
        want = {k: reps.index(v) for k, v in prefix.items() if v in reps}  # every position at a probed state
        assert got == want
        assert all(int(p["state_of"][r, t]) == s for (r, t), s in got.items())
        assert int((p["state_of"] >= 0).sum()) == len(got)
        firsts = [min(k for k, v in prefix.items() if v == rep) for rep in reps]
        assert firsts == sorted(firsts)  # numbered in batch order of their first position
