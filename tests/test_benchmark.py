"""Notebook 06's benchmark (issue 17): one protocol per benchmark, reuse of the paper notebooks' runs, the
leaderboards, the papers' order, the bring-your-own-features folder and the test-time degradations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from reidlab.cli import main
from reidlab.data.records import DataFormatError
from reidlab.data.transforms import build_test_transform
from reidlab.engine.experiment import run_dir, train
from reidlab.recipes import load_recipe
from reidlab.studies import benchmark, coen, denet, mmcf, peca, robustness
from reidlab.studies.leaderboard import EXTERNAL_SEED, export_features, result_line
from reidlab.viz import plot_curves


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REIDLAB_RUNS", str(tmp_path_factory.mktemp("runs")))
        yield train(load_recipe("baseline_multimodal", profile="smoke"), progress=False)


# -- one protocol per benchmark, and the paper notebooks' runs reused -----------------------------------------------

@pytest.mark.parametrize("name", benchmark.MULTIMODAL_BENCHMARKS)
def test_every_multimodal_row_trains_on_the_benchmarks_tree_at_its_size(name):
    recipes = benchmark.multimodal_recipes(name)
    assert list(recipes) == list(benchmark.MULTIMODAL)
    tree = benchmark.TREES["tutorial"][name]
    for row, recipe in recipes.items():
        assert recipe.dataset == name, row
        assert recipe.synthetic == tree["synthetic"] and list(recipe.data["size"]) == tree["size"], row


def test_a_recipe_without_settings_for_a_benchmark_takes_the_nearest_formats():
    mfrnet = benchmark.method_recipe("mfrnet", "wmveid863")            # MFRNet's recipe has no WMVeID863 entry
    assert mfrnet.dataset == "wmveid863" and mfrnet.model["head"] == "per_modality"   # its vehicle settings
    assert benchmark.method_recipe("coen", "rgbnt201").dataset == "rgbnt201"           # CoEN's own, moved


def test_the_paper_notebooks_runs_are_the_benchmarks_runs():
    """Same recipe -> same run-cache folder: the leaderboard loads what notebooks 01-05 trained."""
    def folder(recipe):
        return run_dir(recipe)

    coen_01 = load_recipe("coen", "tutorial")
    assert folder(benchmark.multimodal_recipes("wmveid863")["CoEN"]) == folder(coen_01)
    assert folder(benchmark.multimodal_recipes("wmveid863")[benchmark.VIT_BASELINE]) == folder(coen.baseline(coen_01))
    resnet_baseline = benchmark.multimodal_recipes("rgbnt201")[benchmark.RESNET_BASELINE]
    assert folder(resnet_baseline) == folder(denet.baseline(load_recipe("denet", "tutorial")))
    assert folder(benchmark.multimodal_recipes("rgbnt201")["MFRNet"]) == folder(load_recipe("mfrnet", "tutorial"))
    assert folder(benchmark.multimodal_recipes("rgbnt201")["DENet"]) == folder(load_recipe("denet", "tutorial"))
    assert folder(benchmark.multimodal_recipes("rgbnt100")["CoEN"]) == folder(
        load_recipe("coen", "tutorial", dataset="rgbnt100"))
    for name in benchmark.CROSSMODAL_BENCHMARKS:
        peca_02 = load_recipe("peca", "tutorial", dataset=name)
        recipes = benchmark.crossmodal_recipes(name)
        assert folder(recipes["AGW"]) == folder(peca.baseline(peca_02)) == folder(mmcf.supervised_ceiling(peca_02))
        assert folder(recipes["PECA"]) == folder(peca_02)
        assert folder(recipes["MMCF"]) == folder(mmcf.main_variants(load_recipe("mmcf", "tutorial", dataset=name))
                                                 [mmcf.FULL])


def test_the_recipe_table_shows_one_tree_and_size_per_benchmark():
    table = benchmark.recipe_table(benchmark.multimodal_recipes("rgbnt201"))
    assert table["input (H × W)"].nunique() == 1 and table["tree"].nunique() == 1
    assert table.loc["DENet", "backbone"] == "resnet_tutorial.synth"


# -- leaderboards ---------------------------------------------------------------------------------------------------

def scores_frame() -> pd.DataFrame:
    lines = [("rgbnt201", "baseline", 0, 50.0), ("rgbnt201", "baseline", 1, 52.0), ("rgbnt201", "DENet", 0, 60.0),
             ("rgbnt201", "DENet", 1, 64.0), ("SYSU all", "MMCF", 0, 30.0), ("SYSU all", "MMCF", 1, 34.0),
             ("SYSU all", "PECA", 0, 40.0), ("SYSU all", "PECA", 1, 41.0)]
    return pd.DataFrame([{"benchmark": b, "row": r, "seed": s, "mAP": m, "R-1": m + 5, "mINP": m - 5}
                         for b, r, s, m in lines])


def test_leaderboards_stack_one_board_per_benchmark_with_costs_and_notes():
    costs = {"rgbnt201": {"DENet": {"backbone": "resnet_tutorial.synth", "parameters (M)": 2.3456}}}
    board = benchmark.leaderboards(scores_frame(), costs)
    assert list(board.index) == [("rgbnt201", "DENet"), ("rgbnt201", "baseline"), ("SYSU all", "PECA"),
                                 ("SYSU all", "MMCF")]
    assert board.loc[("rgbnt201", "DENet"), "mAP"] == "62.0 ± 2.8"
    assert board.loc[("rgbnt201", "DENet"), "backbone"] == "resnet_tutorial.synth"
    assert board.loc[("rgbnt201", "DENet"), "parameters (M)"] == 2.35   # 3 significant digits
    assert board.loc[("SYSU all", "MMCF"), "note"] == "unsupervised (no labels)"
    assert (board["seeds"] == 2).all()


def test_each_method_is_compared_with_its_own_familys_baseline_where_seeds_allow():
    scores = scores_frame().replace({"baseline": benchmark.RESNET_BASELINE})
    scores = pd.concat([scores, scores.query("benchmark == 'SYSU all' and row == 'PECA'").assign(row="AGW", mAP=45.0)])
    gaps = benchmark.family_gaps(scores)
    assert set(gaps.index.droplevel(-1)) == {("rgbnt201", "ResNet"), ("SYSU all", "visible-infrared")}
    assert gaps.loc[("rgbnt201", "ResNet", "DENet"), "Δ mAP"] == "+11.0"
    assert gaps.loc[("SYSU all", "visible-infrared", "MMCF"), "Δ mAP"] == "-13.0"


def test_the_papers_numbers_are_each_methods_own_printed_results():
    printed = benchmark.paper_scores(["rgbnt201", "rgbnt100", "msvr310", "SYSU all", "RegDB I→V"])
    value = printed.set_index(["benchmark", "row"])["mAP"]
    assert value["rgbnt201", "MFRNet"] == 80.7 and value["rgbnt201", "DENet"] == 42.41
    assert value["rgbnt100", "CoEN"] == 84.6            # DeiT-B row, not CLIP's 86.4
    assert value["rgbnt100", "DENet"] == 68.1           # complete modalities, not a missing setting
    assert value["SYSU all", "AGW"] == 47.65 and value["RegDB I→V", "MMCF"] == 86.58
    assert ("msvr310", "DENet") not in value.index      # DENet prints no MSVR310 result


def test_rank_agreement_counts_pairs_in_the_same_order():
    printed = pd.DataFrame([("rgbnt201", "baseline", 10.0), ("rgbnt201", "DENet", 20.0), ("SYSU all", "MMCF", 60.0),
                            ("SYSU all", "PECA", 70.0), ("wmveid863", "CoEN", 71.0)],
                           columns=["benchmark", "row", "mAP"]).assign(source="test")
    ranking = benchmark.paper_ranking(scores_frame(), printed)
    assert ranking.loc[("rgbnt201", "DENet"), "ours rank"] == 1 and ranking.loc[("SYSU all", "PECA"), "paper rank"] == 1
    assert "wmveid863" not in ranking.index.get_level_values("benchmark")   # one method: nothing to order
    agreement = benchmark.rank_agreement(ranking)
    assert agreement.loc["rgbnt201", "Kendall τ"] == pytest.approx(1.0)
    assert agreement.loc["all benchmarks (pooled pairs)", "pairs in the same order"] == "2 / 2"
    flipped = benchmark.rank_agreement(ranking.assign(**{"paper (real) mAP": -ranking["paper (real) mAP"]}))
    assert flipped.loc["all benchmarks (pooled pairs)", "Kendall τ"] == pytest.approx(-1.0)


# -- bring your own features ----------------------------------------------------------------------------------------

def test_a_features_folder_places_a_run_exactly_where_the_run_scores(smoke_run, tmp_path):
    files = benchmark.export_benchmark_features(smoke_run, tmp_path)
    assert [f.name for f in files] == ["rgbnt201.npz"]
    rows = benchmark.features_dir_scores("mine", tmp_path)
    ours = result_line("baseline", 0, smoke_run.evaluate())
    assert rows.loc[0, "benchmark"] == "rgbnt201" and rows.loc[0, "seed"] == EXTERNAL_SEED
    assert rows.loc[0, "mAP"] == pytest.approx(ours["mAP"], abs=1e-9)


def test_a_features_folder_with_a_bad_file_is_a_clear_error(smoke_run, tmp_path):
    with pytest.raises(DataFormatError, match="no such features folder"):
        benchmark.features_dir_scores("mine", tmp_path / "absent")
    with pytest.raises(DataFormatError, match="no .npz file"):
        benchmark.features_dir_scores("mine", tmp_path)
    export_features(smoke_run, tmp_path / "market.npz")
    with pytest.raises(DataFormatError, match="unknown file\\(s\\) market.npz.*rgbnt201"):
        benchmark.features_dir_scores("mine", tmp_path)
    with np.load(tmp_path / "market.npz") as npz:
        np.savez(tmp_path / "rgbnt201.npz", **{k: npz[k] for k in npz.files if k != "query_pids"})
    (tmp_path / "market.npz").unlink()
    with pytest.raises(DataFormatError, match="rgbnt201.npz: missing key\\(s\\) query_pids"):
        benchmark.features_dir_scores("mine", tmp_path)


def test_leaderboard_add_prints_the_new_row_beside_ours(smoke_run, tmp_path, capsys):
    board = tmp_path / "board"
    (board / "tables").mkdir(parents=True)
    scores_frame().to_csv(board / "tables" / "scores.csv", index=False)
    benchmark.export_benchmark_features(smoke_run, tmp_path / "features")
    assert main(["leaderboard", "add", "--name", "my method", "--features-dir", str(tmp_path / "features"),
                 "--board", str(board), "--output", str(tmp_path / "out.csv")]) == 0
    printed = capsys.readouterr().out
    assert "## rgbnt201" in printed and "my method" in printed and "DENet" in printed and "SYSU all" not in printed
    written = pd.read_csv(tmp_path / "out.csv")
    assert set(written["method"]) == {"my method", "DENet", "baseline"}


def test_leaderboard_add_without_our_scores_says_what_to_run(smoke_run, tmp_path, capsys):
    benchmark.export_benchmark_features(smoke_run, tmp_path / "features")
    code = main(["leaderboard", "add", "--name", "x", "--features-dir", str(tmp_path / "features"),
                 "--board", str(tmp_path / "nowhere")])
    assert code == 2 and "06_benchmark" in capsys.readouterr().err


# -- test-time degradations -----------------------------------------------------------------------------------------

def images() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {m: torch.randint(0, 256, (3, 40, 20), generator=generator, dtype=torch.uint8) for m in ("rgb", "tir")}


@pytest.mark.parametrize("kind", list(robustness.MULTIMODAL_TARGETS))
def test_a_degradation_hits_one_modality_the_same_way_every_time(kind):
    transform = build_test_transform((40, 20))
    clean = transform({m: Image.fromarray(i.permute(1, 2, 0).numpy()) for m, i in images().items()})
    first = robustness.TestDegradation(kind, 0.9, "rgb").wrap(transform)(images())
    again = robustness.TestDegradation(kind, 0.9, "rgb").wrap(transform)(images())
    assert torch.equal(first["tir"], clean["tir"]), "the other modality must pass unchanged"
    assert not torch.equal(first["rgb"], clean["rgb"]) and torch.equal(first["rgb"], again["rgb"])


def test_severity_zero_is_the_clean_test_transform():
    transform = build_test_transform((20, 10))
    clean = transform({m: Image.fromarray(i.permute(1, 2, 0).numpy()) for m, i in images().items()})
    wrapped = robustness.TestDegradation("fog", 0.0).wrap(transform)(images())
    assert all(torch.equal(wrapped[m], clean[m]) for m in clean)


def test_an_infrared_degradation_stays_grey_and_occlusion_covers_a_box():
    grey = images()["tir"][:1].repeat(3, 1, 1)
    noisy = robustness.TestDegradation("noise", 0.8, "tir").degrade(grey)
    assert torch.equal(noisy[0], noisy[1]) and torch.equal(noisy[1], noisy[2])
    occluded = robustness.TestDegradation("occlusion", 1.0, "rgb").degrade(images()["rgb"])
    changed = (occluded != images()["rgb"]).any(dim=0)
    assert changed.float().mean() == pytest.approx(0.75 ** 2, abs=0.1)   # a 0.75 × 0.75 box of the image


def test_bad_degradations_are_refused():
    with pytest.raises(ValueError, match="unknown degradation 'rain'"):
        robustness.TestDegradation("rain", 0.5)
    with pytest.raises(ValueError, match="severity"):
        robustness.TestDegradation("fog", 1.5)


def test_robustness_scores_start_from_the_clean_run(smoke_run):
    runs = {("baseline", 0): smoke_run}
    clean = result_line("baseline", 0, smoke_run.evaluate())["mAP"]
    scores = robustness.degradation_scores(runs, {"fog": "rgb", "noise": "tir"}, [1.0])
    assert len(scores) == 4 and set(scores["degradation"]) == {"fog", "noise"}
    assert (scores.query("severity == 0")["mAP"] == clean).all()
    missing = robustness.missing_rate_scores(runs, [0.0, 0.5])
    assert missing.query("`η` == 0")["mAP"].iloc[0] == pytest.approx(clean)
    fig = plot_curves(scores, "severity", "mAP", panel="degradation")
    assert len(fig.axes) == 2


def test_plot_curves_names_a_missing_column():
    with pytest.raises(ValueError, match="severity"):
        plot_curves(pd.DataFrame({"row": ["a"], "mAP": [1.0]}), "severity")


def test_the_leaderboard_and_ranking_pictures_have_a_panel_per_benchmark():
    from reidlab.viz import plot_leaderboard, plot_rank_comparison

    scores = scores_frame()
    assert len([ax for ax in plot_leaderboard(scores).axes if ax.get_visible()]) == 2
    printed = scores.groupby(["benchmark", "row"], as_index=False)["mAP"].mean().assign(source="test")
    ranking = benchmark.paper_ranking(scores, printed.assign(mAP=-printed["mAP"]))
    assert list(ranking.index.get_level_values(0).unique()) == ["rgbnt201", "SYSU all"]   # the scores' order
    assert len([ax for ax in plot_rank_comparison(ranking).axes if ax.get_visible()]) == 2
    with pytest.raises(ValueError, match="paper rank"):
        plot_rank_comparison(ranking.drop(columns="paper rank"))
