"""Where a token state's entropy change comes from: one optimizer step split exactly, state by state.

A probed state s (a prefix) has logits z_s(θ) and entropy H_s. Linearising the network around the step
θ → θ + Δθ (docs/theory.md §1.17):

    Δz_lin(s) = J_s Δθ                    (a Jacobian-vector product along the actual update)
    ΔH_lin(s) = −Cov_π(log π_s, Δz_lin(s)) = ∇_θ H_s · Δθ                                    (Lemma 1 ∘ J_s)

With this step's preconditioner held fixed, every step of the trainer's optimizers is affine in this
step's gradient g = Σ_{(r,t)} J_{r,t}^T u_{r,t} (u_{r,t} = ∂L/∂z_{r,t}, the loss gradient at token position
(r, t) of the mini-batch; c the gradient-clipping factor, so the optimizer sees c·g):

    Δθ = −P ⊙ (c g) + Δθ_hist
    AdamW (step t):  P = lr (1 − β1) / ((1 − β1^t) D),  D = sqrt(v_t / (1 − β2^t)) + ε,
                     Δθ_hist = −lr β1 m_{t−1} / ((1 − β1^t) D) − lr λ θ
    SGD:             P = lr,  Δθ_hist = −lr (μ b_{t−1} + λ θ)

(v_t is this step's second moment: the denominator D is what "holding the preconditioner fixed" means; it
makes Δθ linear in this step's per-token gradients). Every response through the prefix s has the same
logits z_s there, so the gradient of the tokens sampled AT s is g_own(s) = J_s^T u_s with
u_s = Σ_{(r,t) at s} u_{r,t}, and

    ΔH_own(s)   = −c ∇H_s · (P ⊙ J_s^T u_s)       the state's own samples (the paper's mechanism)
    ΔH_cross(s) = −c ∇H_s · (P ⊙ g) − ΔH_own(s)    every other token of the mini-batch (generalisation)
    ΔH_hist(s)  =  ∇H_s · Δθ_hist                 optimizer history (momentum, weight decay)
    ΔH_own + ΔH_cross + ΔH_hist = ΔH_lin          to rounding (tested; ``recon_err`` measures it per step)

Reverse mode gives the three per-state terms (one forward of each probed row, and per state the two
gradients ∇H_s and J_s^T u_s from one vmapped backward pass over a chunk of the row's states,
:func:`per_state_terms`, before the optimizer step). ΔH_lin along the update the optimizer actually applied
comes, after it, from the kept ∇_θ H_s (:func:`linearised_from_gradients`, when [S, n_params] float32 fits
the memory budget) or else from forward mode (:func:`linearised_change`); the two agree to float32
rounding. Everything runs in float32 outside any autocast;
the per-state inner products are float32 dot products over the flattened parameters (relative rounding
~1e-6). The loss gradients u come from the training backward itself
(:class:`LogitGradCapture`), so they are exactly what drove the update, in whatever precision it ran.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import torch

import theory

from .forward import gather_states, response_logits

__all__ = ["LogitGradCapture", "StepLinearisation", "linearise_step", "linearised_change",
           "linearised_from_gradients", "per_state_terms", "reconstruction_error"]

F64 = torch.float64


# ----------------------------------------------------------------------------------------------------
# the optimizer step as an affine map of this step's gradient
# ----------------------------------------------------------------------------------------------------

@dataclass
class StepLinearisation:
    """The coming optimizer step, written as ``Δθ = −P ⊙ ĝ + Δθ_hist`` (ĝ: the gradient the optimizer
    sees, after all-reduce and clipping), per parameter in ``model.parameters()`` order.

    Attributes:
      precond: P per parameter (float64, the parameter's shape); includes the learning rate.
      history: Δθ_hist per parameter (float64).
      grad: ĝ per parameter (float64).
      before: θ before the step (float32 clones), to measure the actual Δθ afterwards.
      clip_coef: c, the clipping factor already inside ĝ (own-state gradients are unclipped).
      step_size: η of Theorem 1 when the step is a plain gradient step (SGD without momentum or weight
        decay: ``lr · c``), else ``None`` (adaptive or with history: η is fitted, sign-constrained).
    """

    precond: list[torch.Tensor]
    history: list[torch.Tensor]
    grad: list[torch.Tensor]
    before: list[torch.Tensor]
    clip_coef: float
    step_size: float | None


def _group_of(optimizer) -> dict[int, dict]:
    return {id(p): g for g in optimizer.param_groups for p in g["params"]}


def linearise_step(optimizer, params: list[torch.nn.Parameter], clip_coef: float) -> StepLinearisation:
    """:class:`StepLinearisation` of the step ``optimizer.step()`` is about to take (call after the
    gradients are all-reduced and clipped, before the step).

    Supported: ``torch.optim.AdamW`` / ``Adam`` (no amsgrad, not maximize; Adam's L2 ``weight_decay`` is
    refused: it enters the gradient) and ``torch.optim.SGD`` (momentum μ >= 0, no dampening, no
    Nesterov, not maximize). The AdamW formulas are those of the module docstring.

    Args:
      optimizer: the optimizer; params: ``[n]`` parameters in ``model.parameters()`` order, each with a
        ``.grad`` (missing gradients count as zeros); clip_coef: c in (0, 1].
    Raises:
      ValueError: an unsupported optimizer or option, or c outside (0, 1].
    """
    if not 0 < clip_coef <= 1:
        raise ValueError(f"clip_coef must be in (0, 1], got {clip_coef!r}")
    kind = type(optimizer).__name__
    if kind not in ("AdamW", "Adam", "SGD"):
        raise ValueError(f"the entropy-change decomposition supports AdamW, Adam and SGD, not {kind}")
    groups = _group_of(optimizer)
    precond, history, grads, before = [], [], [], []
    plain = kind == "SGD"
    lr0 = None
    for p in params:
        g = groups[id(p)]
        if g.get("maximize") or g.get("amsgrad") or g.get("nesterov") or g.get("dampening", 0):
            raise ValueError(f"{kind} with maximize / amsgrad / nesterov / dampening is not supported")
        lr = float(g["lr"])
        lr0 = lr if lr0 is None else lr0
        theta = p.detach().to(F64)
        grad = torch.zeros_like(theta) if p.grad is None else p.grad.detach().to(F64)
        state = optimizer.state.get(p, {})
        wd = float(g.get("weight_decay", 0.0))
        if kind == "SGD":
            mu = float(g.get("momentum", 0.0))
            buf = state.get("momentum_buffer")
            hist = -lr * wd * theta
            if mu and buf is not None:
                hist = hist - lr * mu * buf.detach().to(F64)
            pre = torch.full_like(theta, lr)
            plain = plain and mu == 0 and wd == 0 and lr == lr0
        else:
            if kind == "Adam" and wd:
                raise ValueError("Adam with L2 weight_decay is not supported (use AdamW)")
            b1, b2 = g["betas"]
            eps = float(g["eps"])
            t = float(state["step"]) + 1 if "step" in state else 1.0
            m_prev = state["exp_avg"].detach().to(F64) if "exp_avg" in state else torch.zeros_like(theta)
            v_prev = (state["exp_avg_sq"].detach().to(F64) if "exp_avg_sq" in state
                      else torch.zeros_like(theta))
            v_t = b2 * v_prev + (1 - b2) * grad * grad
            bc1, bc2 = 1 - b1 ** t, 1 - b2 ** t
            denom = (v_t.sqrt() / math.sqrt(bc2)) + eps
            pre = lr * (1 - b1) / (bc1 * denom)
            hist = -lr * b1 * m_prev / (bc1 * denom) - lr * wd * theta
        precond.append(pre)
        history.append(hist)
        grads.append(grad)
        before.append(p.detach().clone())
    step = lr0 * clip_coef if plain and lr0 is not None else None
    return StepLinearisation(precond, history, grads, before, float(clip_coef), step)


def reconstruction_error(lin: StepLinearisation, params: list[torch.nn.Parameter]) -> float:
    """‖(−P ⊙ ĝ + Δθ_hist) − Δθ‖ / ‖Δθ‖ with Δθ = θ_after − θ_before (call after the step): how exactly
    the affine map of :func:`linearise_step` reproduces the step taken (float32 rounding of θ: ~1e-4
    and below; NaN when nothing moved)."""
    num = den = 0.0
    for pre, hist, g, b, p in zip(lin.precond, lin.history, lin.grad, lin.before, params):
        delta = p.detach().to(F64) - b.to(F64)
        num += float(((-pre * g + hist) - delta).pow(2).sum())
        den += float(delta.pow(2).sum())
    return math.sqrt(num / den) if den > 0 else float("nan")


# ----------------------------------------------------------------------------------------------------
# loss gradients at the logits, from the training backward
# ----------------------------------------------------------------------------------------------------

class LogitGradCapture:
    """Sums the training loss's gradient ∂L/∂z at every token position of the probed states:
    ``u [S, V]`` with ``u_s = Σ_{(r,t) at s} ∂L/∂z_{r,t}``.

    While :meth:`active` is entered, a forward hook on the model's output embedding (its LM head) marks
    each output that requires grad; a tensor hook adds its gradient, when the training backward reaches
    it, into ``u`` at the positions ``state_of[rows]`` maps to a state (−1: not probed). Outputs are the
    ``[b, R + 1, V]`` logits of :func:`llm_rl.forward.response_logits` (the last column predicts past
    the response and is dropped); every forward of a micro-batch (log-probs, entropy bonus) is captured.

    Args:
      model: the policy (needs ``get_output_embeddings()``); state_of: ``[m, R]`` long, the probed state of
        each (mini-batch row, response column), −1 elsewhere; n_states: S.
    """

    def __init__(self, model, state_of: torch.Tensor, n_states: int):
        head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        if head is None:
            raise ValueError("the model has no output embedding (get_output_embeddings() is None)")
        if state_of.dim() != 2:
            raise ValueError(f"state_of must be [m, R], got {tuple(state_of.shape)}")
        self.head, self.state_of, self.u, self.rows = head, state_of.cpu(), None, None
        self.n_states = n_states

    def _add(self, grad: torch.Tensor, rows: torch.Tensor) -> None:
        g = grad[:, :-1].detach().float().cpu()  # [b, R, V]
        idx = self.state_of[rows][:, : g.shape[1]]
        keep = idx >= 0
        if self.u is None:
            self.u = torch.zeros(self.n_states, g.shape[-1], dtype=torch.float32)
        if bool(keep.any()):
            self.u.index_add_(0, idx[keep], g[keep])

    def _hook(self, module, args, output):
        if self.rows is not None and torch.is_tensor(output) and output.requires_grad:
            rows = self.rows
            output.register_hook(lambda grad: self._add(grad, rows))

    @contextmanager
    def active(self):
        """Capture while inside (the trainer's gradient accumulation of the probed mini-batch)."""
        handle = self.head.register_forward_hook(self._hook)
        try:
            yield self
        finally:
            handle.remove()
            self.rows = None

    def set_rows(self, rows: torch.Tensor | None) -> None:
        """The mini-batch-local row indices ``[b]`` of the micro-batch about to run (None: capture off)."""
        self.rows = None if rows is None else rows.cpu()


# ----------------------------------------------------------------------------------------------------
# per-state terms (reverse mode, before the step) and the linearised change (forward mode, after it)
# ----------------------------------------------------------------------------------------------------

@contextmanager
def _true_embedding_gradients(model):
    """Inside: every ``nn.Embedding`` differentiates its ``padding_idx`` row too. By convention
    ``nn.Embedding`` zeroes that row's gradient, but the row is used in the forward pass wherever the
    padding token is attended (e.g. sampled inside a response), so ∇_θ H_s would otherwise disagree with
    forward-mode derivatives along an update that moves the row (through a tied output head)."""
    saved = [(m, m.padding_idx) for m in model.modules() if isinstance(m, torch.nn.Embedding)]
    try:
        for m, _ in saved:
            m.padding_idx = None
        yield
    finally:
        for m, idx in saved:
            m.padding_idx = idx


def per_state_terms(model, input_ids, attention_mask, prompt_len: int, state_rows, state_cols,
                    u: torch.Tensor, lin: StepLinearisation, *, temperature: float = 1.0, chunk: int = 8,
                    keep_bytes: int = 2**30):
    """Reverse-mode terms of every probed state, at the parameters before the step (module docstring):
    ``own_s = −c ∇H_s · (P ⊙ J_s^T u_s)``, ``grad_s = −c ∇H_s · (P ⊙ g)`` (own + cross) and
    ``hist_s = ∇H_s · Δθ_hist``, plus the logits ``z_s`` (float32), one forward per probed row (the row cut
    after its last probed column) and the two gradients per state from one vmapped backward pass per
    ``chunk`` states of a row, outside autocast.

    Args:
      model: the policy at θ_before (float32 weights); input_ids / attention_mask ``[m, P + R]`` of the
        mini-batch; prompt_len: P; state_rows / state_cols ``[S]``: each state's representative position;
      u: ``[S, V]`` (:class:`LogitGradCapture`); lin: the step's :class:`StepLinearisation`;
      temperature: the rollout temperature (states' policy is softmax(z / T)); chunk: states of one row per
        backward pass (``torch.autograd.grad(..., is_grads_batched=True)``; memory 2·chunk parameter vectors).
      keep_bytes: keep every ∇_θ H_s (``[S, n_params]`` float32, CPU) when it fits in this many bytes, so
        that :func:`linearised_from_gradients` gives ΔH_lin after the step without a forward-mode pass.
    Returns:
      ``(logits [S, V] float32 of z/T, {"own", "grad", "hist": [S] float64}, grad_entropy [S, n] or None)``.
    """
    n = len(state_rows)
    if not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be an int >= 1, got {chunk!r}")
    if u.shape[0] != n or state_cols.shape != state_rows.shape:
        raise ValueError(f"u [{u.shape[0]}, V] and state_cols must match state_rows [{n}]")
    params = list(model.parameters())
    c = lin.clip_coef
    # flat float32 copies of P, P ⊙ ĝ and Δθ_hist: three dot products per state on one vector each (float32
    # BLAS dots: relative rounding ~1e-6, far below the closure test's 1e-4; tests/test_llm_decomposition.py)
    flat = lambda ts: torch.cat([t.reshape(-1) for t in ts])  # noqa: E731
    pre32 = flat(lin.precond).float()
    pg32 = flat([pre * g for pre, g in zip(lin.precond, lin.grad)]).float()
    hist32 = flat(lin.history).float()

    def batched_grads(outs, retain):
        """``[len(outs), n]`` float32: the gradient of each scalar of ``outs`` (one vmapped backward)."""
        eye = torch.eye(len(outs), device=outs.device, dtype=outs.dtype)
        gs = torch.autograd.grad(outs, params, grad_outputs=eye, retain_graph=retain, allow_unused=True,
                                 is_grads_batched=True)
        return torch.cat([(torch.zeros(len(outs), p.numel(), device=p.device) if g is None
                           else g.reshape(len(outs), -1)) for p, g in zip(params, gs)], 1).float().cpu()

    out = {k: torch.zeros(n, dtype=F64) for k in ("own", "grad", "hist")}
    logits_out = None
    dev = input_ids.device
    keep = torch.empty(n, pre32.numel(), dtype=torch.float32) if n * pre32.numel() * 4 <= keep_bytes else None
    with torch.autocast(dev.type, enabled=False), _true_embedding_gradients(model):
        for r in torch.unique(state_rows).tolist():
            sel = (state_rows == r).nonzero().flatten()
            cols = state_cols[sel]
            width = prompt_len + int(cols.max()) + 1
            z_row = response_logits(model, input_ids[r:r + 1, :width], attention_mask[r:r + 1, :width],
                                    prompt_len)[0].float() / temperature  # [R_r, V]
            if logits_out is None:
                logits_out = torch.empty(n, z_row.shape[-1], dtype=torch.float32)
            # the row's states in chunks: ∇H_s and ∇(u_s · z_s) of a chunk in one vmapped backward
            for a in range(0, len(sel), chunk):
                ss, ts = sel[a:a + chunk], cols[a:a + chunk].to(z_row.device)
                z = z_row[ts]  # [k, V]
                logits_out[ss] = z.detach().cpu()
                k = len(ss)
                g = batched_grads(torch.cat([theory.entropy(z), (u[ss].to(z.device) * z).sum(-1)]),
                                  a + chunk < len(sel))
                g_h, g_u = g[:k], g[k:]
                if keep is not None:
                    keep[ss] = g_h
                out["own"][ss] = -c * ((g_h * pre32) * g_u).sum(1).double()
                out["grad"][ss] = -(g_h @ pg32).double()
                out["hist"][ss] = (g_h @ hist32).double()
    return logits_out, out, keep


def linearised_from_gradients(grad_entropy: torch.Tensor, lin: StepLinearisation, params) -> torch.Tensor:
    """ΔH_lin = ∇_θ H_s · Δθ ``[S]`` (float64) along the step taken (Δθ = θ_after − θ_before; call after
    the step), from the per-state entropy gradients kept by :func:`per_state_terms`: the reverse-mode
    twin of :func:`linearised_change` (equal to it to float32 rounding; tests/test_llm_decomposition.py)."""
    delta = torch.cat([(p.detach() - b).reshape(-1) for p, b in zip(params, lin.before)]).float().cpu()
    if grad_entropy.shape[1] != delta.numel():
        raise ValueError("grad_entropy does not belong to these parameters (sizes differ)")
    return (grad_entropy @ delta).double()


def linearised_change(model, lin: StepLinearisation, input_ids, attention_mask, prompt_len: int,
                      state_rows, state_cols, *, temperature: float = 1.0, micro_batch: int = 16
                      ) -> torch.Tensor:
    """Δz_lin = J_s Δθ ``[S, V]`` (float32) at every probed state, by forward-mode AD
    (``torch.func.jvp``) at θ_before along the actual step Δθ = θ_after − θ_before (call after the step;
    the model holds θ_after). Attention runs on PyTorch's composite ("math") SDPA kernel, which has
    forward-mode derivatives; ``micro_batch`` rows per pass."""
    from torch.func import functional_call, jvp
    from torch.nn.attention import SDPBackend, sdpa_kernel

    names = [n for n, _ in model.named_parameters()]
    params = list(model.parameters())
    if len(names) != len(lin.before):
        raise ValueError("the linearisation does not belong to this model (parameter counts differ)")
    primal = dict(zip(names, lin.before))
    tangent = {n: p.detach() - b for n, p, b in zip(names, params, lin.before)}

    def per_rows(ids, am):
        def f(p):
            return response_logits(lambda **kw: functional_call(model, p, (), kw), ids, am, prompt_len)

        with torch.autocast(ids.device.type, enabled=False), sdpa_kernel([SDPBackend.MATH]):
            return jvp(f, (primal,), (tangent,))[1]

    return gather_states(per_rows, input_ids, attention_mask, prompt_len, state_rows, state_cols,
                         micro_batch=micro_batch, temperature=temperature)
