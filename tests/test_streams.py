"""The closed loop on streams whose schema nobody wrote by hand (issue 13, item 6).

For each stream of `tests/streams.py` (credit-risk applications: a covariate and concept shift
with values beyond anything in the training file and a region never seen; a pure concept
drift), a new project as a user makes one: `conveyor schema infer` on the history, `conveyor
run`, then one `conveyor watch --once` per labelled weekly batch with the policy a user would
write (`streams.POLICY`). No retraining before the change, retraining after it, and the final
champion within 0.02 ROC AUC of the oracle: the same pipeline trained on every post-change batch,
both scored on fresh post-change data.
"""

from __future__ import annotations

import pytest
import streams
from conveyor.testing import conveyor_executable

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("kind", streams.KINDS)
def test_the_loop_catches_up_with_a_change_it_was_not_tuned_for(kind, tmp_path):
    figures = streams.run_loop(tmp_path / kind, kind,
                               conveyor=streams.conveyor_runner(conveyor_executable()))
    weekly = {w["week"]: w for w in figures.weekly}
    before = [w for w in figures.weeks if w < figures.change]
    assert all(weekly[w]["status"] in ("ok", "drift") for w in figures.weeks), figures.weekly
    assert figures.retrains_before_change == 0, figures.weekly
    assert all(weekly[w]["outcome"] == "no_action" for w in before), figures.weekly
    assert figures.retrains >= 1 and figures.batches_until_recovery is not None, figures.weekly
    assert figures.final_champion > 1
    assert figures.final_auc >= figures.oracle_auc - 0.02, figures.as_dict()
    assert figures.final_auc > figures.never_retrained_auc + 0.05, figures.as_dict()
