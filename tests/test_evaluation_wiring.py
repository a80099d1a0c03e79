"""Evaluation wiring: model + split → metrics, missing settings and rates, SYSU / RegDB trials, tables."""

import json
import math

import numpy as np
import pytest
import torch
from test_features import TRANSFORM, PooledColour, synthetic_split

from reidlab.cli import main
from reidlab.data.formats import load_split
from reidlab.data.formats.sysu_mm01 import sysu_trials
from reidlab.data.loading import build_test_loader
from reidlab.engine.evaluation import (
    COLUMNS,
    TrialResults,
    evaluate_features,
    evaluate_missing,
    evaluate_missing_rates,
    evaluate_model,
    evaluate_model_features,
    evaluate_regdb_trials,
    evaluate_sysu_trials,
    results_frame,
)
from reidlab.engine.features import extract_features
from reidlab.eval import MISSING_SETTINGS, evaluate, evaluate_features_file, random_missing_masks


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    return tmp_path_factory.getbasetemp()


@pytest.fixture(scope="module")
def rgbnt201(trees):
    return synthetic_split(trees / "rgbnt201", "rgbnt201")


@pytest.fixture(scope="module")
def msvr310(trees):
    return synthetic_split(trees / "msvr310", "msvr310")


def manual(model, split, feature="fused", **kwargs):
    """Reference: extract query and gallery by hand and call reidlab.eval.evaluate."""
    q, g = (extract_features(model, build_test_loader(records, TRANSFORM, 5, modalities=split.modalities),
                             progress=False, **kwargs) for records in (split.query, split.gallery))
    return evaluate(q.select(feature), g.select(feature), q.pids, g.pids, q.camids, g.camids, split.protocol,
                    q.sceneids, g.sceneids)


def same(a, b) -> None:
    np.testing.assert_allclose(a.cmc, b.cmc, atol=1e-12)
    assert a.mAP == pytest.approx(b.mAP, abs=1e-12) and a.mINP == pytest.approx(b.mINP, abs=1e-12)
    assert a.protocol == b.protocol


def test_query_equal_to_gallery_is_extracted_once(rgbnt201):
    assert rgbnt201.query == rgbnt201.gallery and rgbnt201.query is not rgbnt201.gallery
    model = PooledColour()
    result = evaluate_model(model, rgbnt201, TRANSFORM, batch_size=8, progress=False)
    assert len(model.calls) == math.ceil(len(rgbnt201.query) / 8)
    same(result, manual(PooledColour(), rgbnt201))
    assert 0 < result.mAP < 1


def test_separate_query_and_gallery_are_extracted_and_ranked_under_the_split_protocol(msvr310):
    model = PooledColour()
    result = evaluate_model(model, msvr310, TRANSFORM, batch_size=4, flip=True, progress=False)
    assert len(model.calls) == 2 * (math.ceil(len(msvr310.query) / 4) + math.ceil(len(msvr310.gallery) / 4))
    same(result, manual(PooledColour(), msvr310, flip=True))
    assert result.protocol == "msvr310"
    assert evaluate_model(PooledColour(), msvr310, TRANSFORM, protocol="market", progress=False).protocol == "market"


def test_per_modality_features_come_from_one_extraction(rgbnt201):
    model = PooledColour()
    results = evaluate_model_features(model, rgbnt201, TRANSFORM, batch_size=64, progress=False)
    assert list(results) == ["rgb", "nir", "tir", "fused"] and len(model.calls) == 1
    for name, result in results.items():
        same(result, manual(PooledColour(), rgbnt201, feature=name))
    same(evaluate_model(PooledColour(), rgbnt201, TRANSFORM, feature="nir", progress=False), results["nir"])


def test_an_unknown_feature_name_is_a_clear_error(rgbnt201):
    with pytest.raises(ValueError, match=r"no feature named 'global'; it returns rgb, nir, tir, fused"):
        evaluate_model(PooledColour(), rgbnt201, TRANSFORM, feature="global", progress=False)


def test_evaluate_missing_gives_one_row_per_setting_in_percent(rgbnt201):
    frame = evaluate_missing(PooledColour(), rgbnt201, TRANSFORM, progress=False)
    assert list(frame.index) == list(MISSING_SETTINGS) and list(frame.columns) == list(COLUMNS)
    for setting in ("complete", "M(R)", "M(NT)"):
        reference = manual(PooledColour(), rgbnt201, missing=setting)
        assert frame.loc[setting, "mAP"] == pytest.approx(100 * reference.mAP)
        assert frame.loc[setting, "R-5"] == pytest.approx(100 * reference.rank(5))
        assert frame.loc[setting, "mINP"] == pytest.approx(100 * reference.mINP)


def test_missing_settings_on_cross_modal_data_are_rejected(trees):
    split = synthetic_split(trees / "regdb", "regdb")
    with pytest.raises(ValueError, match="needs batches of the modalities"):
        evaluate_model(PooledColour(split.modalities), split, TRANSFORM, missing="M(T)", progress=False)


def test_a_missing_rate_draws_one_mask_over_query_and_gallery(msvr310):
    model = PooledColour()
    evaluate_model(model, msvr310, TRANSFORM, missing=0.5, missing_seed=2, progress=False)
    seen = torch.cat([c["present"] for c in model.calls])
    num = len(msvr310.query) + len(msvr310.gallery)
    torch.testing.assert_close(seen, ~random_missing_masks(num, 0.5, 2))


def test_missing_rates_table_is_the_mean_and_std_over_seeds(rgbnt201):
    frame = evaluate_missing_rates(PooledColour(), rgbnt201, TRANSFORM, rates=[0.0, 0.5], seeds=[0, 1, 2],
                                   progress=False)
    assert list(frame.index) == [0.0, 0.5] and frame.index.name == "rate"
    assert list(frame.columns) == [c + s for c in COLUMNS for s in ("", "_std")] + ["seeds"]
    n = len(rgbnt201.query)
    maps = []
    for seed in (0, 1, 2):
        mask = random_missing_masks(n, 0.5, seed)
        maps.append(100 * manual(PooledColour(), rgbnt201, missing=mask).mAP)
    assert frame.loc[0.5, "mAP"] == pytest.approx(np.mean(maps))
    assert frame.loc[0.5, "mAP_std"] == pytest.approx(np.std(maps, ddof=1))
    assert frame.loc[0.0, "mAP_std"] == pytest.approx(0, abs=1e-9) and frame.loc[0.0, "seeds"] == 3
    assert frame.loc[0.0, "mAP"] == pytest.approx(100 * manual(PooledColour(), rgbnt201).mAP)


def test_sysu_trials_extract_the_query_and_the_gallery_union_once(trees):
    trials = list(sysu_trials(synthetic_split(trees / "sysu", "sysu_mm01", num_ids=10).root, num_trials=4))
    modalities = trials[0].modalities
    model = PooledColour(modalities)
    results = evaluate_sysu_trials(model, iter(trials), TRANSFORM, batch_size=4, progress=False)
    union = {r.key for t in trials for r in t.gallery}
    assert len(union) > len(trials[0].gallery)  # the trials draw different galleries
    assert len(model.calls) == math.ceil(len(trials[0].query) / 4) + math.ceil(len(union) / 4)
    assert results.trials == [0, 1, 2, 3]
    for trial, result in zip(trials, results.results, strict=True):
        same(result, evaluate_model(PooledColour(modalities), trial, TRANSFORM, progress=False))
        assert result.protocol == "sysu_all"

    maps = np.array([r.mAP for r in results.results])
    summary = results.summary()
    assert summary["mAP"]["mean"] == pytest.approx(maps.mean()) and summary["trials"] == 4
    assert summary["mAP"]["std"] == pytest.approx(maps.std(ddof=1))
    frame = results.to_frame()
    assert list(frame.index) == [0, 1, 2, 3] and frame.index.name == "trial"
    np.testing.assert_allclose(frame["mAP"], 100 * maps)
    table = results.table()
    assert table.loc["mean ± std", "mAP"] == f"{100 * maps.mean():.2f} ± {100 * maps.std(ddof=1):.2f}"
    assert "mean ± std" in results.format()

    other = load_split("sysu_mm01", trials[0].root, mode="indoor")
    other.query = other.query[1:]
    with pytest.raises(ValueError, match="trial split 1 has other query records"):
        evaluate_sysu_trials(model, [trials[0], other], TRANSFORM, progress=False)


def test_regdb_trials_use_one_model_per_trial(trees):
    root = synthetic_split(trees / "regdb", "regdb").root
    asked = []

    def model_for_trial(trial):
        asked.append(trial)
        return PooledColour(("rgb", "tir"), scale=trial)

    results = evaluate_regdb_trials(model_for_trial, lambda t: load_split("regdb", root, trial=t), TRANSFORM,
                                    trials=(2, 5), flip=True, progress=False)
    assert asked == [2, 5] and results.trials == [2, 5]
    for trial, result in zip((2, 5), results.results, strict=True):
        split = load_split("regdb", root, trial=trial)
        reference = evaluate_model(PooledColour(("rgb", "tir")), split, TRANSFORM, flip=True, progress=False)
        same(result, reference)
        assert result.protocol == "regdb"


def test_npz_of_query_and_gallery_gives_the_same_metrics_through_the_cli(msvr310, tmp_path, capsys):
    loader = {side: build_test_loader(records, TRANSFORM, 8) for side, records in
              (("query", msvr310.query), ("gallery", msvr310.gallery))}
    q, g = (extract_features(PooledColour(), loader[side], progress=False) for side in ("query", "gallery"))
    direct = evaluate_features(q, g, "msvr310", "fused")
    path = q.save_npz(tmp_path / "feats.npz", "fused", gallery=g)
    from_file = evaluate_features_file(path, "msvr310")
    np.testing.assert_array_equal(from_file.cmc, direct.cmc)
    assert (from_file.mAP, from_file.mINP) == (direct.mAP, direct.mINP)
    assert main(["evaluate", "--features", str(path), "--protocol", "msvr310", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["mAP"] == pytest.approx(direct.mAP, abs=1e-12)


def test_results_frame_names_rows_and_reports_percent(rgbnt201):
    a = evaluate_model(PooledColour(), rgbnt201, TRANSFORM, progress=False)
    b = evaluate_model(PooledColour(), rgbnt201, TRANSFORM, feature="rgb", progress=False)
    frame = results_frame({"fused": a, "rgb only": b}, index_name="model")
    assert list(frame.index) == ["fused", "rgb only"] and frame.index.name == "model"
    assert frame.loc["rgb only", "R-10"] == pytest.approx(100 * b.rank(10))
    assert frame.loc["fused", "mAP"] == pytest.approx(100 * a.mAP)


def test_trial_results_of_one_trial_have_zero_std(rgbnt201):
    result = evaluate_model(PooledColour(), rgbnt201, TRANSFORM, progress=False)
    table = TrialResults([result], [0]).table(decimals=1)
    assert table.loc["mean ± std", "R-1"] == f"{100 * result.rank(1):.1f} ± 0.0"
