"""`reidlab evaluate` on an npz of features, its bad-input errors, and the evaluation benchmark."""

import json

import numpy as np
import pytest

from reidlab.bench import bench_eval, reference_evaluate
from reidlab.cli import main
from reidlab.data.records import DataFormatError
from reidlab.eval import evaluate_features_file, pairwise_distance


def features(seed: int = 0, num_query: int = 20, num_gallery: int = 60) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((6, 16))
    q_pids, g_pids = rng.integers(0, 6, num_query), rng.integers(0, 6, num_gallery)
    return {
        "query_feats": (centres[q_pids] + rng.standard_normal((num_query, 16))).astype(np.float32),
        "gallery_feats": (centres[g_pids] + rng.standard_normal((num_gallery, 16))).astype(np.float32),
        "query_pids": q_pids, "gallery_pids": g_pids,
        "query_camids": rng.integers(0, 3, num_query), "gallery_camids": rng.integers(0, 3, num_gallery),
        "query_sceneids": rng.integers(0, 4, num_query), "gallery_sceneids": rng.integers(0, 4, num_gallery),
    }


@pytest.mark.parametrize("protocol", ["market", "msvr310", "regdb"])
def test_evaluate_command_prints_json_matching_the_reference(tmp_path, capsys, protocol):
    arrays = features()
    path = tmp_path / "feats.npz"
    np.savez(path, **arrays)
    assert main(["evaluate", "--features", str(path), "--protocol", protocol, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)

    distmat = pairwise_distance(arrays["query_feats"], arrays["gallery_feats"]).numpy()
    ref = reference_evaluate(distmat, arrays["query_pids"], arrays["gallery_pids"], arrays["query_camids"],
                             arrays["gallery_camids"], protocol, arrays["query_sceneids"], arrays["gallery_sceneids"])
    assert summary["mAP"] == pytest.approx(ref["mAP"], abs=1e-9)
    assert summary["mINP"] == pytest.approx(ref["mINP"], abs=1e-9)
    assert summary["cmc"] == pytest.approx(list(ref["cmc"]), abs=1e-9)
    assert len(summary["cmc"]) == 50 and summary["rank1"] == summary["cmc"][0]
    assert summary["num_valid_queries"] + summary["num_skipped_queries"] == 20


def test_evaluate_command_prints_a_table_and_respects_max_rank(tmp_path, capsys):
    arrays = features()
    arrays["query_camids"] = arrays["query_camids"] % 2 * 3 + 3  # SYSU camera numbers: 3 or 6
    arrays["gallery_camids"] = np.array([1, 2, 4, 5])[arrays["gallery_camids"]]
    path = tmp_path / "sysu.npz"
    np.savez(path, **arrays)
    assert main(["evaluate", "--features", str(path), "--protocol", "sysu_all"]) == 0
    out = capsys.readouterr().out
    assert "protocol sysu_all" in out and "mAP" in out and "R-20" in out
    assert len(evaluate_features_file(path, "sysu_all", max_rank=30).cmc) == 30


@pytest.mark.parametrize(
    "change, protocol, message",
    [
        ({"drop": "gallery_camids"}, "market", "missing key\\(s\\) gallery_camids"),
        ({"drop": "query_sceneids"}, "msvr310", "missing key\\(s\\) query_sceneids"),
        ({"query_pids": np.arange(5)}, "market", "query_pids must be a 1-D integer array of length 20"),
        ({"gallery_pids": np.zeros(60)}, "market", "gallery_pids must be a 1-D integer array"),
        ({"query_feats": np.zeros(20, dtype=np.float32)}, "market", "query_feats must be a 2-D float array"),
        ({"gallery_feats": np.zeros((60, 8), dtype=np.float32)}, "market", "dimension 16 but gallery_feats has 8"),
        ({"gallery_feats": np.full((60, 16), np.nan, dtype=np.float32)}, "market", "gallery_feats contains NaN"),
        ({}, "sysu_all", "camera numbers 1-6"),
    ],
)
def test_bad_feature_files_name_the_file_and_the_key(tmp_path, capsys, change, protocol, message):
    arrays = features()
    arrays.pop(change.pop("drop", None), None)
    arrays.update(change)
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataFormatError, match=message) as error:
        evaluate_features_file(path, protocol)
    assert str(path) in str(error.value)
    assert main(["evaluate", "--features", str(path), "--protocol", protocol]) == 2
    assert str(path) in capsys.readouterr().err


def test_missing_or_unreadable_file(tmp_path):
    with pytest.raises(DataFormatError, match="not found"):
        evaluate_features_file(tmp_path / "absent.npz", "market")
    garbage = tmp_path / "garbage.npz"
    garbage.write_text("not an archive")
    with pytest.raises(DataFormatError, match="garbage.npz: not a readable .npz"):
        evaluate_features_file(garbage, "market")
    single = tmp_path / "single.npy"
    np.save(single, np.zeros((2, 3)))
    with pytest.raises(DataFormatError, match="single.npy: not a readable .npz archive \\(a single .npy array"):
        evaluate_features_file(single, "market")
    with pytest.raises(ValueError, match="unknown evaluation protocol"):
        evaluate_features_file(garbage, "cuhk03")


def test_bench_eval_runs_at_a_tiny_scale():
    rows = list(bench_eval(seed=1, repeats=1, scale=0.01, threads=1))
    assert [r["case"] for r in rows] == ["rgbnt100", "sysu", "large"]
    for row in rows:
        assert row["identical"] is True and row["threads"] == 1 and row["ours_s"] > 0
        assert {"peer_s", "speedup", "ours_peak_mib", "peer_peak_mib", "matmul_s"} <= set(row)
    assert rows[0]["peer_mAP_gap"] < 1e-6 and rows[1]["trials"] == 10 and rows[2]["peer_s"] is None
    with pytest.raises(ValueError, match="unknown case"):
        list(bench_eval(cases=("market",)))
