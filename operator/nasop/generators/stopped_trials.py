"""An early-stopped trial, modelled as the shorter trial it is.

A trial stopped after k of its planned E epochs reports its accuracy at epoch k. Fed to the GP
under its planned parameters (`epochs = E`), that value says "this configuration, trained E
epochs, ends at the epoch-k accuracy": the regions early stopping cut look worse than they are,
and the model avoids them. Where the trainer's schedule does not depend on the planned number
of epochs (a constant learning rate, as nasop's trainer uses), the first k epochs of an
E-epoch run are exactly a k-epoch run, so the same point is an honest evaluation of the same
architecture with `epochs = k`.

`StoppedAsShorter` is an Ax transform that rewrites the epochs parameter of each
early-stopped trial's training point to the number of epochs it trained: the last step it
logged plus one (steps count epochs from 0, as the trial contract states). Candidates,
completed trials and running ones pass through unchanged. The manifest opts in with
`earlyStopping.epochsParameter`; the engine (`nasop.engine.strategy`) adds the transform first
in the model node's list, so it sees parameters on their own scale.
"""

from __future__ import annotations

from ax.adapter.transforms.base import Transform
from ax.core.base_trial import TrialStatus
from ax.core.data_utils import ExperimentData
from ax.core.experiment import Experiment
from ax.storage.transform_registry import register_transform

#: `transform_configs` key of the transform's options
CONFIG_KEY = "StoppedAsShorter"


def trained_epochs(experiment: Experiment) -> dict[int, int]:
    """Epochs each early-stopped trial trained: its last logged step plus one."""
    stopped = [i for i, t in experiment.trials.items() if t.status is TrialStatus.EARLY_STOPPED]
    if not stopped:
        return {}
    df = experiment.lookup_data(trial_indices=stopped).full_df
    if df.empty or "step" not in df.columns:
        return {}
    last = df.dropna(subset=["step"]).groupby("trial_index")["step"].max()
    return {int(i): int(step) + 1 for i, step in last.items()}


class StoppedAsShorter(Transform):
    """Training points of early-stopped trials at the epochs they trained.

    Config: `{"parameter": NAME}`, the int search-space parameter that sets how many epochs a
    trial trains. A trial's value is lowered, never raised (a trial that logged more steps than
    it planned keeps its plan).
    """

    no_op_for_experiment_data = False

    def transform_experiment_data(self, experiment_data: ExperimentData) -> ExperimentData:
        name = self.config.get("parameter")
        arm_data = experiment_data.arm_data
        if not isinstance(name, str) or self.adapter is None or name not in arm_data.columns:
            return experiment_data
        trained = trained_epochs(self.adapter._experiment)
        if not trained:
            return experiment_data
        trial = arm_data.index.get_level_values("trial_index")
        for index, epochs in trained.items():
            rows = trial == index
            if rows.any():
                planned = arm_data.loc[rows, name]
                arm_data.loc[rows, name] = planned.where(planned <= epochs, epochs)
        return experiment_data


register_transform(StoppedAsShorter)  # strategies that use it are saved and restored

__all__ = ["CONFIG_KEY", "StoppedAsShorter", "trained_epochs"]
