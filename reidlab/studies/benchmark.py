"""Notebook 06's benchmark (issue 17): every paper's method on the same trees, protocol, seeds and last-epoch
selection — the recipes, the leaderboards, and our order of the methods beside the papers' order.

    variants = multimodal_recipes("rgbnt201")                    # {"baseline (ViT)": ..., "CoEN": ..., ...}
    runs = studies.train_variants(variants, seeds=[0, 1, 2])     # the paper notebooks' runs come from the cache
    scores = multimodal_scores({"rgbnt201": runs})               # one line per (benchmark, row, seed)
    boards = leaderboards(scores, costs={"rgbnt201": run_costs(runs)})
    family_gaps(scores)                                          # each method vs its matched baseline
    ranking = paper_ranking(scores); rank_agreement(ranking)     # ours (synthetic) vs the papers (real)

**Multi-modal** (RGB-NIR-TIR, :data:`MULTIMODAL`), two backbone families (:data:`FAMILIES`): the multi-branch
baseline on the tutorial ViT (CoEN's matched baseline; MFRNet's own, in notebook 04, differs only in its learning
rates), CoEN and MFRNet; the multi-branch baseline on the tutorial ResNet (DENet's matched baseline) and DENet — on
the RGBNT201-, RGBNT100-, MSVR310- and WMVeID863-format trees. **Visible-infrared** (:data:`CROSSMODAL`): AGW (PECA's
matched baseline), PECA and MMCF — unsupervised, it never reads a label — on SYSU-MM01 (all / indoor search) and
RegDB (both query directions).

One tree and one input size per benchmark (:data:`TREES`, the tutorial profile): every method trains and is tested
on the same images at the same size. Each tree is one a paper notebook already trains on — RGBNT201: notebooks
04-05's; WMVeID863 and RGBNT100: notebook 01's; MSVR310 gets RGBNT100's settings — so a run a paper notebook trained
with the same recipe comes from the run cache. Everything else of a method's recipe is its own tutorial profile: its
backbone (each paper's family at the same tutorial size; the ``backbone`` column says which), solver and schedule —
the methods as their papers train them, not re-tuned here. A recipe with no settings for a benchmark (MFRNet and
DENet on WMVeID863) takes its settings for the nearest format of the same kind (:data:`NEAREST`), else those of its
own benchmark (CoEN on RGBNT201). Other profiles keep each recipe's own tree and size (real data: the papers' sizes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd
from scipy.stats import kendalltau

from reidlab.data.records import DataFormatError
from reidlab.engine.experiment import Run
from reidlab.papers import paper_results
from reidlab.recipes import Recipe, load_recipe
from reidlab.studies import coen, denet, peca
from reidlab.studies.crossmodal import protocol_scores, protocol_splits
from reidlab.studies.leaderboard import METRICS, export_features, features_scores, leaderboard, result_line, run_cost
from reidlab.studies.variants import ablation_table

VIT_BASELINE, RESNET_BASELINE = "baseline (ViT)", "baseline (ResNet)"
MULTIMODAL: tuple[str, ...] = (VIT_BASELINE, "CoEN", "MFRNet", RESNET_BASELINE, "DENet")
CROSSMODAL: tuple[str, ...] = ("AGW", "PECA", "MMCF")
#: Each method's matched baseline (same backbone, data, solver, schedule): the first row of its family.
FAMILIES: dict[str, tuple[str, ...]] = {"ViT": (VIT_BASELINE, "CoEN", "MFRNet"), "ResNet": (RESNET_BASELINE, "DENet"),
                                        "visible-infrared": CROSSMODAL}
MULTIMODAL_BENCHMARKS: tuple[str, ...] = ("rgbnt201", "rgbnt100", "msvr310", "wmveid863")
CROSSMODAL_BENCHMARKS: tuple[str, ...] = ("sysu_mm01", "regdb")
#: What a row's note says beyond its numbers.
NOTES: dict[str, str] = {"MMCF": "unsupervised (no labels)"}

_VEHICLE_TREE = {"synthetic": {"seed": 0, "num_ids": 36, "degradations": "default"}, "size": [24, 48]}
#: ``{profile: {benchmark: {"synthetic": tree, "size": input size}}}`` imposed on every method (synthetic data only).
TREES: dict[str, dict[str, dict[str, Any]]] = {"tutorial": {
    "rgbnt201": {"synthetic": {"seed": 0, "num_ids": 48}, "size": [64, 32]},
    "rgbnt100": _VEHICLE_TREE,
    "msvr310": _VEHICLE_TREE,
    "wmveid863": {"synthetic": {"seed": 0, "num_ids": 36, "degradations": "flare_heavy"}, "size": [24, 48]},
}}
#: The benchmark whose recipe settings a method takes where its recipe has none for a vehicle benchmark (then: the
#: recipe's own benchmark, e.g. CoEN's WMVeID863 settings on RGBNT201).
NEAREST: dict[str, str] = {"wmveid863": "rgbnt100", "msvr310": "rgbnt100", "rgbnt100": "msvr310"}


def method_recipe(name: str, benchmark: str, profile: str = "tutorial", overrides: Mapping[str, Any] | None = None,
                  data_root: str | None = None,
                  trees: Mapping[str, Mapping[str, Mapping[str, Any]]] = TREES) -> Recipe:
    """Recipe ``name`` on ``benchmark``: its own settings for that benchmark (else :data:`NEAREST`'s, else its
    profile's own benchmark's), on the benchmark's tree and input size of ``trees[profile]`` for synthetic data."""
    for settings in (benchmark, NEAREST.get(benchmark), None):   # None: the recipe's own benchmark
        try:
            recipe = load_recipe(name, profile, overrides, dataset=settings, data_root=data_root)
            break
        except ValueError as error:
            if "has no settings for dataset" not in str(error):
                raise
    recipe = recipe.override({"dataset": benchmark})
    tree = trees.get(profile, {}).get(benchmark)
    if tree is not None and data_root is None:
        recipe = recipe.override({"synthetic": tree["synthetic"], "data.size": tree["size"]})
    return recipe


def multimodal_recipes(benchmark: str, profile: str = "tutorial", overrides: Mapping[str, Any] | None = None,
                       data_root: str | None = None,
                       trees: Mapping[str, Mapping[str, Mapping[str, Any]]] = TREES) -> dict[str, Recipe]:
    """``{row: recipe}`` of :data:`MULTIMODAL` on one benchmark (see the module docstring)."""
    options = {"profile": profile, "overrides": overrides, "data_root": data_root, "trees": trees}
    coen_recipe, denet_recipe = (method_recipe(name, benchmark, **options) for name in ("coen", "denet"))
    return {VIT_BASELINE: coen.baseline(coen_recipe), "CoEN": coen_recipe,
            "MFRNet": method_recipe("mfrnet", benchmark, **options),
            RESNET_BASELINE: denet.baseline(denet_recipe), "DENet": denet_recipe}


def crossmodal_recipes(benchmark: str, profile: str = "tutorial", overrides: Mapping[str, Any] | None = None,
                       data_root: str | None = None) -> dict[str, Recipe]:
    """``{row: recipe}`` of :data:`CROSSMODAL` on SYSU-MM01 or RegDB: notebooks 02-03's recipes (one tree, one size)."""
    peca_recipe = load_recipe("peca", profile, overrides, dataset=benchmark, data_root=data_root)
    return {"AGW": peca.baseline(peca_recipe), "PECA": peca_recipe,
            "MMCF": load_recipe("mmcf", profile, overrides, dataset=benchmark, data_root=data_root)}


def multimodal_scores(runs: Mapping[str, Mapping[tuple[str, int], Run]]) -> pd.DataFrame:
    """``{benchmark: {(row, seed): Run}}`` -> one line per (benchmark, row, seed): :data:`METRICS` in %."""
    return pd.DataFrame([{"benchmark": benchmark, **result_line(row, seed, run.evaluate())}
                         for benchmark, benchmark_runs in runs.items() for (row, seed), run in benchmark_runs.items()])


def crossmodal_scores(runs: Mapping[str, Mapping[tuple[str, int], Run]], num_trials: int = 10) -> pd.DataFrame:
    """``{benchmark: {(row, seed): Run}}`` -> one line per (protocol, row, seed) — SYSU all / indoor (mean of
    ``num_trials`` gallery draws), RegDB V→I / I→V — with the protocol as ``benchmark``."""
    frames = []
    for benchmark_runs in runs.values():
        recipe = next(iter(benchmark_runs.values())).recipe
        scores = protocol_scores(benchmark_runs, protocol_splits(recipe, num_trials))
        frames.append(scores.rename(columns={"protocol": "benchmark"}))
    return pd.concat(frames, ignore_index=True)[["benchmark", "row", "seed", *METRICS]]


def run_costs(runs: Mapping[tuple[str, int], Run]) -> dict[str, dict[str, Any]]:
    """``{row: backbone + run_cost}`` of the first seed's run of every row."""
    firsts: dict[str, Run] = {}
    for (row, _), run in runs.items():
        firsts.setdefault(row, run)
    return {row: {"backbone": run.recipe.model.get("backbone", ""), **run_cost(run)} for row, run in firsts.items()}


def leaderboards(scores: pd.DataFrame, costs: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None,
                 notes: Mapping[str, str] = NOTES) -> pd.DataFrame:
    """One :func:`~reidlab.studies.leaderboard.leaderboard` per benchmark of ``scores``, stacked with the
    benchmark as the outer index; ``costs[benchmark][row]`` adds that row's cost columns."""
    return pd.concat({benchmark: leaderboard(frame.drop(columns="benchmark"), (costs or {}).get(benchmark),
                                             notes={row: notes[row] for row in frame["row"] if row in notes})
                      for benchmark, frame in scores.groupby("benchmark", sort=False)}, names=["benchmark"])


def family_gaps(scores: pd.DataFrame, families: Mapping[str, Sequence[str]] = FAMILIES,
                metrics: Sequence[str] = ("mAP", "R-1")) -> pd.DataFrame:
    """Each method against its matched baseline (the first row of its family), paired by seed, on every benchmark
    with more than one seed: :func:`~reidlab.studies.ablation_table` stacked by (benchmark, family)."""
    tables = {}
    for benchmark, frame in scores.groupby("benchmark", sort=False):
        if frame["seed"].nunique() < 2:
            continue
        for family, rows in families.items():
            members = frame[frame["row"].isin(rows)].drop(columns="benchmark")
            if members["row"].nunique() > 1 and rows[0] in set(members["row"]):
                tables[benchmark, family] = ablation_table(members, reference=rows[0], metrics=list(metrics))
    return pd.concat(tables, names=["benchmark", "family"])


#: The real-benchmark result each method's paper prints (mAP): ``{row: (paper, tables, setting, column filters)}``.
#: AGW's numbers are PECA's Tables 1-2 (a peer's quote); CoEN's the DeiT-B rows (MFRNet's use CLIP, DENet ResNet-50).
PAPER_ROWS: dict[str, tuple[str, tuple[int, ...], str, dict[str, str]]] = {
    "CoEN": ("coen", (1, 2), "CoEN", {"backbone": "ViT"}),
    "MFRNet": ("mfrnet", (1, 2), "Ours", {}),
    "DENet": ("denet", (1, 3), "DENet", {"detail": "No Missing"}),
    "AGW": ("peca", (1, 2), "AGW", {}),
    "PECA": ("peca", (1, 2), "PECA", {}),
    "MMCF": ("mmcf", (1,), "MMCF", {}),
}


class Setting(NamedTuple):
    """One column of the leaderboards: the ``dataset`` of the papers' tables, the file stem of its bring-your-own
    features and the protocol they are evaluated under."""

    paper_dataset: str
    stem: str
    protocol: str


#: Every leaderboard setting: a multi-modal tree, or a visible-infrared protocol. SYSU-MM01's feature files hold the
#: first gallery draw (our rows: the mean of ten draws); RegDB's, the recipe's trial.
SETTINGS: dict[str, Setting] = {
    "rgbnt201": Setting("rgbnt201", "rgbnt201", "market"), "rgbnt100": Setting("rgbnt100", "rgbnt100", "market"),
    "msvr310": Setting("msvr310", "msvr310", "msvr310"), "wmveid863": Setting("wmveid863", "wmveid863", "market"),
    "SYSU all": Setting("sysu_mm01_all", "sysu_all", "sysu_all"),
    "SYSU indoor": Setting("sysu_mm01_indoor", "sysu_indoor", "sysu_indoor"),
    "RegDB V→I": Setting("regdb_v2i", "regdb_v2i", "regdb"), "RegDB I→V": Setting("regdb_i2v", "regdb_i2v", "regdb"),
}
#: Bring your own features: ``<stem>.npz`` -> (our setting, its protocol).
FEATURE_FILES: dict[str, tuple[str, str]] = {s.stem: (name, s.protocol) for name, s in SETTINGS.items()}


def paper_scores(benchmarks: Sequence[str], rows: Mapping[str, tuple] = PAPER_ROWS) -> pd.DataFrame:
    """The mAP each method's paper prints on the real benchmark of each of ``benchmarks`` (where it prints one):
    columns ``benchmark``, ``row``, ``mAP``, ``source``."""
    lines = []
    for row, (paper, tables, setting, filters) in rows.items():
        printed = paper_results(paper)
        for benchmark in benchmarks:
            dataset = SETTINGS[benchmark].paper_dataset if benchmark in SETTINGS else benchmark
            found = printed[printed["table"].isin(tables) & (printed["setting"] == setting)
                            & (printed["dataset"] == dataset)]
            for column, value in filters.items():
                found = found[found[column] == value]
            if len(found) and pd.notna(found["mAP"].iloc[0]):
                lines.append({"benchmark": benchmark, "row": row, "mAP": float(found["mAP"].iloc[0]),
                              "source": f"{paper} Table {int(found['table'].iloc[0])}"})
    return pd.DataFrame(lines, columns=["benchmark", "row", "mAP", "source"])


def paper_ranking(scores: pd.DataFrame, printed: pd.DataFrame | None = None, metric: str = "mAP") -> pd.DataFrame:
    """Per benchmark (in the order of ``scores``), the methods both we (synthetic, mean over seeds) and the papers
    (real, :func:`paper_scores`) score: each side's value and rank (1 = best). Benchmarks with fewer than two such
    methods are left out."""
    printed = paper_scores(scores["benchmark"].unique()) if printed is None else printed
    ours = scores.groupby(["benchmark", "row"], sort=False)[metric].mean().rename(f"ours (synthetic) {metric}")
    theirs = printed.set_index(["benchmark", "row"])[metric].rename(f"paper (real) {metric}")
    both = pd.concat([ours, theirs, printed.set_index(["benchmark", "row"])["source"]], axis=1, join="inner")
    both = both[both.groupby(level="benchmark")[ours.name].transform("size") >= 2]
    for side, rank in ((ours.name, "ours rank"), (theirs.name, "paper rank")):
        both[rank] = both.groupby(level="benchmark")[side].rank(ascending=False, method="min").astype(int)
    order = {benchmark: position for position, benchmark in enumerate(scores["benchmark"].unique())}
    both = both.assign(_order=[order[benchmark] for benchmark in both.index.get_level_values(0)])
    return both.sort_values(["_order", "paper rank"]).drop(columns="_order").rename_axis(["benchmark", "method"])


def rank_agreement(ranking: pd.DataFrame) -> pd.DataFrame:
    """Kendall's τ between our order and the papers' per benchmark, and over all benchmarks pooled (every pair of
    methods on one benchmark counted once: τ = (concordant − discordant) / pairs)."""
    ours, theirs = (c for c in ranking.columns if c.startswith(("ours (", "paper (")))
    lines, totals = {}, {"agree": 0, "disagree": 0, "pairs": 0}
    for benchmark, frame in ranking.groupby(level="benchmark", sort=False):
        pairs = list(combinations(range(len(frame)), 2))
        signs = [(frame[ours].iloc[a] - frame[ours].iloc[b]) * (frame[theirs].iloc[a] - frame[theirs].iloc[b])
                 for a, b in pairs]
        counts = {"agree": sum(s > 0 for s in signs), "disagree": sum(s < 0 for s in signs), "pairs": len(pairs)}
        totals = {key: totals[key] + value for key, value in counts.items()}
        lines[benchmark] = {"methods": len(frame), "pairs in the same order": f"{counts['agree']} / {len(pairs)}",
                            "Kendall τ": kendalltau(frame[ours], frame[theirs]).statistic}
    lines["all benchmarks (pooled pairs)"] = {
        "methods": len(ranking), "pairs in the same order": f"{totals['agree']} / {totals['pairs']}",
        "Kendall τ": (totals["agree"] - totals["disagree"]) / totals["pairs"] if totals["pairs"] else float("nan")}
    return pd.DataFrame.from_dict(lines, orient="index").rename_axis("benchmark")


def export_benchmark_features(run: Run, directory: str | Path) -> list[Path]:
    """The files :func:`features_dir_scores` reads, from a run of ours: ``<benchmark>.npz`` (multi-modal), or one
    file per visible-infrared protocol of the run's benchmark (SYSU-MM01: its first gallery draw)."""
    directory = Path(directory)
    if run.recipe.dataset in MULTIMODAL_BENCHMARKS:
        return [export_features(run, directory / f"{run.recipe.dataset}.npz")]
    return [export_features(run, directory / f"{SETTINGS[protocol].stem}.npz", split=splits[0])
            for protocol, splits in protocol_splits(run.recipe, num_trials=1).items()]


def features_dir_scores(name: str, directory: str | Path) -> pd.DataFrame:
    """Leaderboard lines (``benchmark``, ``row`` = ``name``, ``seed`` −1, metrics, ``note``) for every
    ``<stem>.npz`` of :data:`FEATURE_FILES` in ``directory`` — features computed anywhere on our synthetic trees'
    test sets, in the ``reidlab evaluate`` format. Another file name, an empty folder or a bad file is a
    :class:`~reidlab.data.records.DataFormatError` naming it."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataFormatError(f"{directory}: no such features folder")
    files = sorted(directory.glob("*.npz"))
    unknown = [f.name for f in files if f.stem not in FEATURE_FILES]
    if unknown or not files:
        raise DataFormatError(f"{directory}: {'unknown file(s) ' + ', '.join(unknown) if unknown else 'no .npz file'}; "
                              f"expected <setting>.npz with setting one of {', '.join(FEATURE_FILES)}")
    return pd.concat([features_scores(name, f, FEATURE_FILES[f.stem][1]).assign(benchmark=FEATURE_FILES[f.stem][0])
                      for f in files], ignore_index=True)[["benchmark", "row", "seed", *METRICS, "note"]]


def recipe_table(variants: Mapping[str, Recipe]) -> pd.DataFrame:
    """What each row trains with on one benchmark: backbone, input size, epochs × iterations, batch, solver and
    the synthetic tree (the protocol in one look)."""
    def describe(recipe: Recipe) -> dict[str, Any]:
        data, train = recipe.data, recipe.train
        tree = ("real copy" if recipe.data_root is not None else
                ", ".join(f"{k} {v}" for k, v in recipe.synthetic.items()))
        return {"backbone": recipe.model.get("backbone", ""), "input (H × W)": " × ".join(map(str, data["size"])),
                "epochs": train["epochs"], "batch": f"{data['p']} × {data['k']}" if "p" in data else "",
                "optimizer": f"{train.get('optimizer', 'sgd')}, lr {train['lr']:g}", "tree": tree}
    return pd.DataFrame({row: describe(recipe) for row, recipe in variants.items()}).T.rename_axis("method")
