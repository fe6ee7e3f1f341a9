"""The entropy-dynamics probe as a ``transformers.TrainerCallback`` for TRL's ``GRPOTrainer``.

Every ``every``-th optimizer step, on the first micro-batch of the step (``trainer.step_inputs``), the
probe captures the full-vocabulary logits z_s of up to ``max_states`` token states s right before the
optimizer step (``on_pre_optimizer_step``: gradients accumulated, weights unchanged) and again right after
it (``on_optimizer_step``), then runs :func:`llm_rl.diagnostics.diagnose_step`:

    per state:  ΔH_obs = H(z') − H(z),   ΔH_first = −Cov_π(log π, z' − z)   (Lemma 1)

summarised as ``diag/*`` (R² and sign accuracy of Lemma 1 on the measured Δz, an identity check, of the
second order and of the Theorem-1/2 predictions with η fitted under η >= 0; the batch covariances and,
across prompt groups, their within/between decomposition; groups are the rows that share a prompt). The
own / cross / history decomposition (docs/theory.md §1.17) needs the loss gradients of every micro-batch of
the step and runs in this package's trainer only. The summary is appended to the trainer's metric buffers
(``trainer._metrics``), so TRL's ``log`` averages it with its own metrics and every ``report_to`` backend
receives it.

The probe forward passes use ``llm_rl.forward.response_logits`` (positions from the attention mask) in
eval mode without autocast; before and after use the same pass, so ΔH is consistent.
"""

from __future__ import annotations

import torch
from transformers import TrainerCallback

from llm_rl.diagnostics import StepProbe

__all__ = ["EntropyProbeCallback"]


class EntropyProbeCallback(TrainerCallback):
    """Observed vs predicted entropy change per state around an optimizer step (module docstring).

    Args:
      trainer: the :class:`integrations.trl.EntropyMechGRPOTrainer` (its ``step_inputs``, model, metrics).
      every: probe optimizer steps whose index (``state.global_step`` before the step) is a multiple.
      max_states: cap on probed token positions (a subsample seeded by (selection_seed, step)).
    """

    def __init__(self, trainer, *, every: int, max_states: int = 256):
        for name, v in (("every", every), ("max_states", max_states)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        self.trainer, self.every, self.max_states = trainer, every, max_states
        self._probe = None

    def _model(self):
        return self.trainer.accelerator.unwrap_model(self.trainer.model)

    def _in_eval(self, fn):
        model = self._model()
        was_training = model.training
        model.eval()
        try:
            return fn(model)
        finally:
            model.train(was_training)

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        """Capture the probe states' logits before the step (when this step is probed)."""
        self._probe = None
        inputs = self.trainer.step_inputs
        if state.global_step % self.every or inputs is None:
            return
        mask = inputs["completion_mask"].bool()
        if "tool_mask" in inputs:
            mask = mask & inputs["tool_mask"].bool()
        if not bool(mask.any()):
            return
        prompt = inputs["prompt_ids"]
        ids = torch.cat([prompt, inputs["completion_ids"]], dim=1)
        att = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
        adv = inputs["advantages"]
        adv = (adv.unsqueeze(1) if adv.dim() == 1 else adv).expand(mask.shape)
        groups = torch.unique(prompt.cpu(), dim=0, return_inverse=True)[1]
        gen = torch.Generator().manual_seed(args.selection_seed * 1_000_033 + state.global_step)
        self._probe = self._in_eval(lambda model: StepProbe(
            model, ids, att, mask, prompt.shape[1], adv, groups, max_states=self.max_states, generator=gen))

    def on_optimizer_step(self, args, state, control, **kwargs):
        """Diagnose the step just taken; append ``diag/*`` to the trainer's metric buffers."""
        if self._probe is None:
            return
        probe, self._probe = self._probe, None
        summary, _ = self._in_eval(lambda model: probe.finish(model))
        buf = self.trainer._metrics["train"]
        for k, v in summary.items():
            buf[k].append(float(v))
