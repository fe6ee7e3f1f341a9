"""The package's objectives (Clip-Cov, KL-Cov, PPO-clip, ...) inside TRL's ``GRPOTrainer``: a two-line change.

    from integrations.trl import EntropyMechGRPOConfig as GRPOConfig, EntropyMechGRPOTrainer as GRPOTrainer
    args = GRPOConfig(..., objective="kl_cov", objective_params={"kl_ratio": 2e-3, "kl_coef": 1.0})

What the subclass changes in ``GRPOTrainer._compute_loss`` and nothing else (generation, rewards,
advantages, reference model, vLLM, logging stay TRL's):

- the per-token loss is ``theory.objectives.get_objective(objective)(log π_θ, log π_old, A, mask)`` (one
  implementation; log π_old = log π_θ detached on-policy, as TRL);
- Clip-Cov / KL-Cov select over the whole optimizer step: every micro-batch of the gradient-accumulation
  window on every process (:mod:`integrations.trl_window`), with a generator seeded by
  (``selection_seed``, global step);
- TRL's additions apply to the loss matrix L as in TRL: ``top_entropy_quantile`` and
  ``off_policy_mask_threshold`` masks and the vLLM importance weights multiply L, the reference KL adds
  β·k3 (× ρ with ``use_bias_correction_kl``), the static entropy bonus and the MoE aux loss are added
  after aggregating;
- aggregation is TRL's, per ``loss_type`` (micro-batch b of B rows, mask M, W = accumulation steps):

  ==========  ==============================================  ===========================================
  loss_type   TRL's value                                     here (``theory.aggregation.aggregate``)
  ==========  ==============================================  ===========================================
  grpo        mean_b (Σ_t L·M / n_b) / W                      seq-mean-token-mean, global_seq_count = B
  bnpo        Σ L·M / Σ M / W                                 token-mean (this micro-batch's count)
  dr_grpo     Σ L·M / (B · max_completion_length) / W         seq-mean-token-sum-norm, C = B·T_max
  dapo        Σ L·M / (N_gen / R · W / spg)                   token-mean, global_token_count = that
  ==========  ==============================================  ===========================================

  ``cispo``, ``sapo``, ``vespo`` and ``luspo`` define their own per-token loss (or need sequence-level
  ratios), so they cannot combine with an objective: the config rejects them, and also
  ``importance_sampling_level='sequence'``, ``delta`` and the adaptive entropy controller.

Metrics (``self._metrics``, so every ``report_to`` backend gets them): TRL's ``entropy`` and ``kl``, the
objective's ``objective/*`` keys (token-weighted over processes), and per optimizer step
``objective/step_selected_count`` / ``objective/step_num_tokens``. The entropy-dynamics probe is
:class:`integrations.trl_probe.EntropyProbeCallback` (``probe_every > 0``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch

try:
    import trl
    from trl import GRPOConfig, GRPOTrainer
except ImportError as err:  # pragma: no cover - exercised only without trl installed
    raise ImportError("integrations.trl needs TRL: pip install 'trl>=1.16,<2'") from err

from llm_rl.config import ON_POLICY_KL_COV
from theory.aggregation import aggregate
from theory.objectives import KNOWN_OBJECTIVES, get_objective, objective_spec, validate_objective_params

from .trl_probe import EntropyProbeCallback
from .trl_window import WindowBatch, micro_batch_stats, select_window, selection_generator

__all__ = ["EntropyMechGRPOConfig", "EntropyMechGRPOTrainer", "EntropyProbeCallback", "SUPPORTED_LOSS_TYPES",
           "METRIC_STEP_SELECTED", "METRIC_STEP_TOKENS", "resolve_objective_params"]

#: TRL loss types whose normalisation combines with a package objective (see the module table)
SUPPORTED_LOSS_TYPES: tuple[str, ...] = ("grpo", "bnpo", "dr_grpo", "dapo")
#: tokens selected by Clip-/KL-Cov over the whole optimizer step (all micro-batches and processes)
METRIC_STEP_SELECTED = "objective/step_selected_count"
#: unmasked tokens of the whole optimizer step (the selection scope's N)
METRIC_STEP_TOKENS = "objective/step_num_tokens"
_MM_KEYS = ("pixel_values", "image_grid_thw", "num_images", "pixel_attention_mask", "spatial_shapes",
            "num_tiles", "image_sizes", "token_type_ids", "mm_token_type_ids", "image_position_ids")


def resolve_objective_params(objective: str, params: dict, *, epsilon: float, epsilon_high: float | None
                             ) -> dict:
    """The objective's checked hyperparameters (``theory.objectives.validate_objective_params``), with the
    PPO clip taken from TRL's config where ``params`` does not set it:

        eps_low ← epsilon;  eps_high ← epsilon_high, or (epsilon_high None) epsilon when the objective's
        own defaults are symmetric (ppo_clip, clip_cov) and its own default otherwise (clip_higher 0.28).

    Raises ValueError: unknown objective, unknown hyperparameter, bad value (e.g. a percent given as a
    fraction: kl_ratio=0.2 selects 20 % of all tokens)."""
    spec = objective_spec(objective)
    if not isinstance(params, dict):
        raise ValueError(f"objective_params must be a dict, got {type(params).__name__}")
    out = dict(params)
    if "eps_low" in spec.params and "eps_low" not in out:
        out["eps_low"] = epsilon
    if "eps_high" in spec.params and "eps_high" not in out:
        symmetric = spec.params["eps_high"].default == spec.params["eps_low"].default
        if epsilon_high is not None:
            out["eps_high"] = epsilon_high
        elif symmetric:
            out["eps_high"] = epsilon
    return validate_objective_params(objective, out)


@dataclass
class EntropyMechGRPOConfig(GRPOConfig):
    """``trl.GRPOConfig`` plus the package's objective; every value is checked in ``__post_init__``."""

    objective: str = field(default="ppo_clip", metadata={
        "help": f"token-level objective of theory.objectives: one of {', '.join(KNOWN_OBJECTIVES)}"})
    objective_params: dict = field(default_factory=dict, metadata={
        "help": "the objective's hyperparameters, e.g. {'kl_ratio': 2e-3, 'kl_coef': 1.0} (ratios are "
                "fractions of tokens, not percents); eps_low/eps_high default to epsilon/epsilon_high"})
    selection_seed: int = field(default=0, metadata={
        "help": "seed of Clip-Cov's random choice; step k draws from a generator seeded (seed, k)"})
    probe_every: int = field(default=0, metadata={
        "help": "run the entropy-dynamics probe (observed vs first-order ΔH) every K steps (0: off)"})
    probe_max_states: int = field(default=256, metadata={
        "help": "at most this many token states of the step's first micro-batch are probed"})

    def __post_init__(self):
        super().__post_init__()
        self.objective = objective_spec(self.objective).name
        # checked now (fails before any model is loaded); the trainer re-resolves the same values
        resolve_objective_params(self.objective, self.objective_params, epsilon=self.epsilon,
                                 epsilon_high=self.epsilon_high)
        if self.loss_type not in SUPPORTED_LOSS_TYPES:
            raise ValueError(f"loss_type={self.loss_type!r} defines its own per-token loss or needs "
                             f"sequence-level ratios, so it cannot combine with objective="
                             f"{self.objective!r}; "
                             f"use one of {', '.join(SUPPORTED_LOSS_TYPES)} (their normalisations are kept)")
        unsupported = {"importance_sampling_level='sequence'": self.importance_sampling_level != "token",
                       "delta (two-sided clip)": self.delta is not None,
                       "use_adaptive_entropy": bool(self.use_adaptive_entropy)}
        bad = [k for k, v in unsupported.items() if v]
        if bad:
            raise ValueError(f"{', '.join(bad)} cannot combine with the package's token-level objectives; "
                             "unset it, or use trl.GRPOTrainer")
        for name in ("selection_seed", "probe_every", "probe_max_states"):
            v, low = getattr(self, name), 1 if name == "probe_max_states" else 0
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise ValueError(f"{name} must be an int >= {low}, got {v!r}")
        if self.objective == "kl_cov" and self.gradient_accumulation_steps % (
                self.steps_per_generation * self.num_iterations) == 0:   # TRL then keeps no old log-probs
            how = "set num_iterations > 1 or steps_per_generation > gradient_accumulation_steps"
            warnings.warn(ON_POLICY_KL_COV.format(how=how), UserWarning, stacklevel=2)


class EntropyMechGRPOTrainer(GRPOTrainer):
    """``trl.GRPOTrainer`` whose policy loss is the package's objective (module docstring). Takes the same
    arguments as ``GRPOTrainer``; ``args`` must be an :class:`EntropyMechGRPOConfig`."""

    def __init__(self, *args, **kwargs):
        cfg = kwargs.get("args", args[2] if len(args) > 2 else None)
        if not isinstance(cfg, EntropyMechGRPOConfig):
            raise ValueError("EntropyMechGRPOTrainer needs args=EntropyMechGRPOConfig(...), got "
                             f"{type(cfg).__name__}")
        super().__init__(*args, **kwargs)
        a = self.args
        self.objective_fn = get_objective(a.objective)
        self.objective_params = resolve_objective_params(a.objective, a.objective_params, epsilon=a.epsilon,
                                                         epsilon_high=a.epsilon_high)
        self.selects = objective_spec(a.objective).select is not None
        period = a.steps_per_generation * self.num_iterations
        if self.selects and period % a.gradient_accumulation_steps:
            raise ValueError(
                f"{a.objective} selects over each optimizer step's micro-batches, which must come from one "
                f"generation batch: steps_per_generation × num_iterations = {period} must be a multiple of "
                f"gradient_accumulation_steps = {a.gradient_accumulation_steps}")
        self._window, self._window_pos = None, 0
        #: the first micro-batch of the current optimizer step (the probe's batch); set in _compute_loss
        self.step_inputs = None
        if a.probe_every:
            self.add_callback(EntropyProbeCallback(self, every=a.probe_every, max_states=a.probe_max_states))

    # -- selection over the optimizer step -----------------------------------------------------------

    def _logps(self, model, inputs, grad: bool):
        """(log π ``[B, T]``, entropies or None, aux loss or None) of a micro-batch's completion tokens."""
        ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
        att = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
        with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
            return self._get_per_token_logps_and_entropies(
                model, ids, att, inputs["completion_ids"].size(1), compute_entropy=grad,
                compute_aux_loss=grad and self.aux_loss_enabled, **{k: inputs.get(k) for k in _MM_KEYS})

    @staticmethod
    def _mask(inputs) -> torch.Tensor:
        m = inputs["completion_mask"]
        return m if "tool_mask" not in inputs else m * inputs["tool_mask"]

    @staticmethod
    def _token_advantages(inputs, like: torch.Tensor) -> torch.Tensor:
        adv = inputs["advantages"]
        return (adv.unsqueeze(1) if adv.dim() == 1 else adv).expand_as(like)

    def _window_batch(self, model, micro_batches, first_log_prob: torch.Tensor | None) -> WindowBatch:
        """This process's window: current log π of every micro-batch, concatenated. The first micro-batch's
        comes from the loss's own forward when given (``first_log_prob``, detached: the parameters have not
        moved since), the others' from a no-grad forward each: W micro-batches cost W − 1 extra forwards."""
        lps, olds, advs, masks = [], [], [], []
        for p, mb in enumerate(micro_batches):
            lp = first_log_prob if p == 0 and first_log_prob is not None else \
                self._logps(model, mb, grad=False)[0].detach()
            old = mb.get("old_per_token_logps")
            lps.append(lp)
            olds.append(lp if old is None else old)
            advs.append(self._token_advantages(mb, lp))
            masks.append(self._mask(mb).bool())
        widths = {x.shape[1] for x in lps}
        if len(widths) != 1:
            raise ValueError(f"the optimizer step's micro-batches have different completion widths {widths}")
        return WindowBatch(torch.cat(lps), torch.cat(olds), torch.cat(advs), torch.cat(masks),
                           lps[0].shape[0])

    def _step_stats(self, model, inputs, log_prob: torch.Tensor):
        """The micro-batch's :class:`CovStats` of the whole optimizer step's selection (computed at its first
        micro-batch, whose current log π is ``log_prob``: :func:`integrations.trl_window.select_window`)."""
        if self._window is None:
            w, spg, s0 = self.current_gradient_accumulation_steps, self.args.steps_per_generation, self._step
            period = spg * self.num_iterations
            if any((s0 + p) % period == 0 for p in range(1, w)):
                raise ValueError(f"optimizer step starting at micro-step {s0} spans two generation batches; "
                                 "make the batches per epoch a multiple of gradient_accumulation_steps")
            mbs = [self._buffered_inputs[(s0 + p) % spg] for p in range(w)]
            gen = selection_generator(self.args.selection_seed, self.state.global_step,
                                      inputs["completion_ids"].device)
            first = log_prob.detach() if mbs[0] is inputs else None   # TRL hands the buffered batch itself
            self._window = select_window(self._window_batch(model, mbs, first), objective=self.args.objective,
                                         params=self.objective_params, generator=gen,
                                         accelerator=self.accelerator)
            st = self._window.stats
            self._log_values({METRIC_STEP_SELECTED: st.selected.sum().float(),
                              METRIC_STEP_TOKENS: st.num_tokens.float()}, "train", reduce=False)
        return micro_batch_stats(self._window, self._window_pos)

    def _end_micro_batch(self):
        self._window_pos += 1
        if self.accelerator.sync_gradients or self._window_pos >= self.current_gradient_accumulation_steps:
            self._window, self._window_pos = None, 0

    # -- the loss ------------------------------------------------------------------------------------

    def _aggregate(self, mat: torch.Tensor, mask: torch.Tensor, inputs, mode: str) -> torch.Tensor:
        """TRL's normalisation of ``loss_type`` (module table) through ``theory.aggregation.aggregate``."""
        w = self.current_gradient_accumulation_steps if mode == "train" else 1.0
        b, lt = mat.shape[0], self.loss_type
        if lt == "grpo":
            return aggregate(mat, mask, "seq-mean-token-mean", global_seq_count=float(b)) / w
        if lt == "bnpo":
            return aggregate(mat, mask, "token-mean") / w
        if lt == "dr_grpo":
            return aggregate(mat, mask, "seq-mean-token-sum-norm",
                             norm_constant=float(b * self.max_completion_length)) / w
        if lt == "dapo":
            n = inputs["num_items_in_batch"].clamp(min=1.0) / self.accelerator.num_processes
            if mode == "train":
                n = n * self.current_gradient_accumulation_steps / self.args.steps_per_generation
            return aggregate(mat, mask, "token-mean", global_token_count=n)
        raise ValueError(f"loss_type {lt!r} cannot combine with an objective (use one of "
                         f"{', '.join(SUPPORTED_LOSS_TYPES)})")

    def _compute_loss(self, model, inputs):
        """Loss of one micro-batch (module docstring): objective matrix, TRL's masks/weights/KL, TRL's
        aggregation of ``loss_type``, entropy bonus and aux loss; logs the metrics."""
        mode = "train" if self.model.training else "eval"
        if mode == "train" and self._window_pos == 0:
            self.step_inputs = inputs
        lp, entropies, aux_loss = self._logps(model, inputs, grad=True)
        mask = self._mask(inputs)
        m = mask.bool()
        adv = self._token_advantages(inputs, lp)
        old = inputs.get("old_per_token_logps")
        old = lp.detach() if old is None else old
        stats = self._step_stats(model, inputs, lp) if (self.selects and mode == "train") else None
        gen = selection_generator(self.args.selection_seed, self.state.global_step, lp.device)
        mat, met = self.objective_fn(lp, old, adv, m, **self.objective_params, generator=gen, stats=stats)
        if self.off_policy_mask_threshold is not None:
            sampling = inputs.get("sampling_per_token_logps", old)
            keep = self.get_off_policy_mask(adv[:, :1], lp, sampling, mask, self.off_policy_mask_threshold)
            mat = mat * keep
        if self.top_entropy_quantile < 1.0:
            entropy_mask = self.get_high_entropy_mask(entropies, mask, 1 - self.top_entropy_quantile)
            mat = mat * entropy_mask
        else:
            entropy_mask = None
        if self.use_vllm and self.vllm_importance_sampling_correction:
            mat = mat * inputs["importance_sampling_ratio"]
        if self.beta != 0.0:
            d = inputs["ref_per_token_logps"] - lp
            kl = torch.exp(d) - d - 1
            if self.args.use_bias_correction_kl:
                kl = kl * torch.exp(lp - old)
            mat = mat + self.beta * kl
        loss = self._aggregate(mat, m, inputs, mode)
        if getattr(self, "_entropy_bonus_enabled", False):
            eff = mask if entropy_mask is None else mask * entropy_mask
            w = self.current_gradient_accumulation_steps if mode == "train" else 1.0
            policy = loss.detach()
            loss = loss - self.entropy_coef * (entropies * eff).sum() / eff.sum().clamp(min=1.0) / w
            self._log_values({"policy_loss": policy}, mode, reduce=False, mean=True)
        if self.aux_loss_enabled:
            w = self.current_gradient_accumulation_steps if mode == "train" else 1.0
            loss = loss + self.router_aux_loss_coef * aux_loss / w
        self._log_micro_batch(met, entropies, m, kl if self.beta != 0.0 else None, mode)
        if mode == "train":
            self._end_micro_batch()
        return loss

    # -- metrics -------------------------------------------------------------------------------------

    def _log_values(self, values: dict, mode: str, *, reduce: bool, mean: bool = False):
        """Append ``values`` (0-dim tensors) to TRL's metric buffers with one host sync: summed across
        processes (``reduce``), averaged across them (``mean``), or as they are."""
        if not values:
            return
        vec = torch.stack([v.detach().float().reshape(()) for v in values.values()])
        if reduce or mean:
            vec = self.accelerator.reduce(vec, reduction="mean" if mean else "sum")
        for k, v in zip(values, vec.tolist()):
            self._metrics[mode][k].append(v)

    def _log_micro_batch(self, met: dict, entropies, m: torch.Tensor, kl, mode: str):
        """TRL's ``entropy`` / ``kl`` and the objective's metrics, token-weighted over processes."""
        n = m.sum().float()
        ent = torch.where(m, entropies.detach().float(), 0.0).sum()
        sums = {"entropy": ent}
        if kl is not None:
            sums["kl"] = torch.where(m, kl.detach().float(), 0.0).sum()
        counted = ("objective/selected_count", "objective/num_tokens")
        for k, v in met.items():
            sums[k] = v.float() if k in counted else v.float() * n
        sums["__n__"] = n
        vec = self.accelerator.reduce(torch.stack([v.reshape(()) for v in sums.values()]), reduction="sum")
        vals = dict(zip(sums, vec.tolist()))
        total = max(vals.pop("__n__"), 1.0)
        for k, v in vals.items():
            self._metrics[mode][k].append(v if k in counted else v / total)


def _check_trl_version():
    major, minor = (int(x) for x in trl.__version__.split(".")[:2])
    if (major, minor) < (1, 16) or major >= 2:
        raise ImportError(f"integrations.trl is tested with trl>=1.16,<2; found {trl.__version__}")


_check_trl_version()
