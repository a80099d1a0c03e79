"""The study layer: the reusable steps of a paper notebook, each written once.

- :func:`train_variants` / :func:`score_runs` / :func:`ablation_table` — variants × seeds through the run cache,
  scored, laid out with mean ± std and the paired difference to a reference row (:mod:`.variants`);
  :func:`train_groups` trains several such sets in one call (the worker pool stays full);
- :func:`matched_baseline` — the baseline trained exactly like a method (:mod:`.baselines`);
- :func:`paired_effect` — the one noise rule behind every verdict word (:mod:`.noise`);
- :class:`Claim`, :class:`PaperDelta`, :func:`claims_table` — the paper's effects beside ours (:mod:`.claims`);
- :func:`sweep` / :func:`sweep_many` — hyper-parameters over values × seeds (:mod:`.sweeps`); :func:`paired_sweep`
  the same for a method and its baseline together (e.g. a verdict on larger trees);
- :mod:`.crossmodal` — the visible-infrared test protocols (SYSU-MM01 all / indoor, RegDB both directions);
- :mod:`.leaderboard` — methods side by side with their costs, and rows from features computed elsewhere;
- :mod:`.benchmark` — notebook 06: every paper's method on one protocol per benchmark, the papers' order beside ours;
- :mod:`.robustness` — test-time degradations of one modality and the missing rate η, as curves.

What is specific to one paper — its variants, claims and analyses — lives in one module per paper
(:mod:`reidlab.studies.coen`, :mod:`reidlab.studies.denet`), next to its model (``reidlab/models/``), loss
(``reidlab/losses/``), method builder (``reidlab/methods/``), recipe (``reidlab/recipes/``) and printed
numbers (``reidlab/papers/``).
"""

from reidlab.studies.baselines import matched_baseline
from reidlab.studies.claims import Claim, PaperDelta, claims_table
from reidlab.studies.noise import BEYOND, ONE_SEED, WITHIN, describe, paired_differences, paired_effect
from reidlab.studies.sweeps import paired_sweep, sweep, sweep_many
from reidlab.studies.variants import (
    ablation_table,
    rename_rows,
    runs_of,
    score_runs,
    seeded,
    train_groups,
    train_variants,
)

__all__ = ["BEYOND", "ONE_SEED", "WITHIN", "Claim", "PaperDelta", "ablation_table", "claims_table", "describe",
           "matched_baseline", "paired_differences", "paired_effect", "rename_rows", "runs_of", "score_runs", "seeded",
           "paired_sweep", "sweep", "sweep_many", "train_groups", "train_variants"]
