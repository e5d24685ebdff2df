"""The runner's side of ``train(augment=..., balance=...)`` and ``infer(tta=...)``, and its ``box_tasks``.

- Training augmentation (``augment={"img": ["hflip", "brightness"]}``) runs in ``handle_batch`` on train loaders
  only, on the batch's device after the uint8 -> float conversion, from a generator seeded by the run's seed, the
  epoch, the batch step and the DDP rank: the same seed gives the same augmented batches.
- Class balancing (``balance=...``, ``runners/balancing.py``) replaces the training split's batch sampler.
- Test-time augmentation (``tta=["hflip", ...]``) averages the activations of the original batch and of each
  transformed view (box coordinates mirrored back first), stores the averages as a normal ``infer()`` does (logits
  are the averaged activations mapped back by each task's ``inverse_activation``) and records the views in
  every split's manifest (``"tta"``; :meth:`AugmentationMixin.stored_tta`).
"""
from __future__ import annotations

import contextlib
import os
from typing import Dict, List, Optional

import torch

from ..augment import AugmentationError, AugmentationPlan, TTAPlan, batch_generator, parse_box_tasks
from ..augment.boxes import check_boxes
from ..flow.batch import output_logits
from ..parallel import ShardedBatchSampler
from ..parallel.balanced import BalancedBatchSampler
from ..tasks.base import without_inverse_activation
from . import artifacts
from ..training.balancing import make_draw
from .errors import RunnerError
from ..safe_read import read_json
from ..messages import warn_user


class AugmentationMixin:
    """Augmentation, test-time augmentation and class balancing for :class:`DnnCoolSupervisedRunner`."""

    _augment_plan: Optional[AugmentationPlan] = None
    _balance_draw = None
    _tta_plan: Optional[TTAPlan] = None
    box_tasks = None

    def _set_box_tasks(self, box_tasks) -> None:
        """Parse and check ``box_tasks`` (``augment/boxes.py``) against the flow, at construction."""
        try:
            self.box_tasks = parse_box_tasks(box_tasks)
            check_boxes(self.box_tasks, self.flow)
        except AugmentationError as e:
            raise RunnerError(str(e)) from None

    # -- training --------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _training_extras(self, augment=None, balance=None):
        """Validate ``augment`` and ``balance`` (before anything runs) and hold them for one ``train()``."""
        try:
            plan = AugmentationPlan(augment, self.flow, self.dataset, self.box_tasks) if augment is not None \
                else None
        except AugmentationError as e:
            raise RunnerError(str(e)) from None
        draw = make_draw(balance, self.flow, self.dataset, self.splits["train"]) if balance is not None else None
        self._augment_plan, self._balance_draw = plan, draw
        try:
            yield
        finally:
            self._augment_plan, self._balance_draw = None, None

    def _make_batch_sampler(self, split: str, shuffle: bool, batch_size: int) -> ShardedBatchSampler:
        """The batch sampler of a split loader: balanced for the shuffled training split while ``balance`` is
        set, else the plain seeded one."""
        if split == "train" and shuffle and self._balance_draw is not None:
            return BalancedBatchSampler(self._balance_draw, batch_size, seed=self.split_seed)
        return ShardedBatchSampler(len(self.splits[split]), batch_size, shuffle=shuffle, seed=self.split_seed)

    def _augmented(self, batch: dict) -> dict:
        """``batch`` augmented when training with ``augment`` (train loaders only), else as it is."""
        if self._augment_plan is None or not self.is_train_loader:
            return batch
        device = next(iter(batch["inputs"].values())).device if batch["inputs"] else torch.device("cpu")
        rank = max(0, getattr(self.engine, "process_index", 0) or 0)
        generator = batch_generator(device, self.split_seed, self.epoch_step, self.loader_batch_step, rank)
        try:
            return self._augment_plan.apply(batch, generator)
        except AugmentationError as e:
            raise RunnerError(str(e)) from None

    # -- test-time augmentation ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _tta_context(self, tta):
        """Validate ``tta`` against the flow and hold it for one ``infer()``."""
        plan = None
        if tta is not None:
            try:
                plan = TTAPlan(tta, self.flow, self.dataset, self.box_tasks)
            except AugmentationError as e:
                raise RunnerError(str(e)) from None
            missing = without_inverse_activation(self.flow.tasks)
            if missing:
                raise RunnerError(f"infer(tta=...): task(s) {missing} do not implement inverse_activation, so "
                                  f"their averaged activations cannot be stored; infer without tta")
        self._tta_plan = plan
        try:
            yield
        finally:
            self._tta_plan = None

    def _tta_manifest(self) -> dict:
        """What the manifest of a split inferred now records about test-time augmentation."""
        return {"tta": self._tta_plan.describe() if self._tta_plan is not None else []}

    def _batch_logits(self, model, inputs: dict, batch_size: int) -> Dict[str, torch.Tensor]:
        """The model's logits per task for one inference batch; with ``tta``, the logits of the averaged
        activations over the views."""
        graph = self.flow.graph
        plan = self._tta_plan
        if plan is None:
            return output_logits(graph, model(inputs), batch_size)
        device = next(iter(inputs.values())).device
        generator = batch_generator(device, self.split_seed, 0x77A)
        total, views = None, 0
        for view, flips in plan.views(inputs, generator):
            logits = output_logits(graph, model(view), batch_size)
            acts = {name: self.flow.tasks[name].activation(value.float()) for name, value in logits.items()}
            acts = plan.unflip(acts, flips)
            total = acts if total is None else {name: total[name] + acts[name] for name in total}
            views += 1
        return {name: self.flow.tasks[name].inverse_activation(value / views) for name, value in total.items()}

    def _warn_tta_mismatch(self, split: str) -> None:
        """Warn when the thresholds in ``tuned.json`` were tuned on outputs averaged over other views than the
        stored outputs of ``split`` (averaged probabilities are calibrated differently)."""
        try:
            tuned = read_json(os.path.join(self.run_dir, "tuned.json")).get("tta", [])
        except (OSError, ValueError, AttributeError):
            return  # load_tuned reports a damaged file itself
        stored = self.stored_tta(split)
        if tuned != stored:
            warn_user(f"the thresholds in tuned.json were tuned on outputs inferred with tta={tuned}, but the "
                      f"'{split}' outputs were inferred with tta={stored}: infer both with the same tta")

    def stored_tta(self, split: str) -> List[str]:
        """The test-time augmentation views the stored outputs of ``split`` were averaged over (``[]``: none)."""
        try:
            manifest = artifacts.read_manifest(self.infer_dir, split, list(self.flow.tasks))
        except FileNotFoundError:
            raise RunnerError(f"split '{split}' was not inferred ({os.path.join(self.infer_dir, split)}); run "
                              f"runner.infer() first") from None
        except artifacts.ArtifactError as e:
            raise RunnerError(str(e)) from None
        return list(manifest.get("tta", []))
