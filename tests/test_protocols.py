"""Removal rules per protocol and SYSU-MM01's identity de-duplication for CMC."""

import numpy as np
import pytest
import torch

from reidlab.data.records import PROTOCOL_NAMES as CLI_PROTOCOLS
from reidlab.eval import PROTOCOLS, Labels, evaluate_distmat, get_protocol
from reidlab.eval.protocols import removal_mask


def labels(pids, camids, sceneids=None) -> Labels:
    scenes = None if sceneids is None else torch.tensor(sceneids)
    return Labels(torch.tensor(pids), torch.tensor(camids), scenes)


def test_registry_matches_the_cli_choices():
    assert set(PROTOCOLS) == set(CLI_PROTOCOLS)


def test_market_removes_same_id_and_same_camera_only():
    query = labels([1, 2], [0, 1])
    gallery = labels([1, 1, 2, 2], [0, 1, 0, 1])
    expected = [[True, False, False, False],
                [False, False, False, True]]
    assert removal_mask("market", query, gallery).tolist() == expected


def test_msvr310_removes_same_id_and_same_scene_whatever_the_camera():
    query = labels([1], [0], sceneids=[5])
    gallery = labels([1, 1, 1, 2], [0, 3, 0, 0], sceneids=[5, 5, 6, 5])
    assert removal_mask("msvr310", query, gallery).tolist() == [[True, True, False, False]]


@pytest.mark.parametrize("name", ["sysu_all", "sysu_indoor"])
def test_sysu_removes_every_cam2_item_for_cam3_queries(name):
    query = labels([1, 1], [3, 6])
    gallery = labels([1, 7, 1, 7, 1], [2, 2, 1, 4, 5])
    expected = [[True, True, False, False, False],  # any identity at cam 2, same location as cam 3
                [False, False, False, False, False]]
    assert removal_mask(name, query, gallery).tolist() == expected


def test_regdb_removes_nothing():
    query = labels([1, 2], [2, 2])
    gallery = labels([1, 2, 3], [1, 1, 1])
    assert not removal_mask("regdb", query, gallery).any()
    assert removal_mask("regdb", query, gallery).shape == (2, 3)


def test_sysu_cmc_counts_each_gallery_identity_once():
    # ranked gallery ids: 5, 5, 7, 1 (hit). Plain CMC: first hit at rank 4; deduplicated (5, 7, 1): rank 3.
    distances = [[0.1, 0.2, 0.3, 0.4]]
    g_pids, g_cams = [5, 5, 7, 1], [1, 4, 5, 1]
    sysu = evaluate_distmat(distances, [1], g_pids, [6], g_cams, "sysu_all", max_rank=5)
    regdb = evaluate_distmat(distances, [1], g_pids, [6], g_cams, "regdb", max_rank=5)
    assert sysu.first_hit[0] == 2 and regdb.first_hit[0] == 3
    np.testing.assert_allclose(sysu.cmc[:5], [0, 0, 1, 1, 1])
    np.testing.assert_allclose(regdb.cmc[:5], [0, 0, 0, 1, 1])
    assert sysu.mAP == pytest.approx(1 / 4) == regdb.mAP  # mAP / mINP use the full list
    assert sysu.mINP == pytest.approx(1 / 4)


def test_sysu_dedup_applies_after_removal():
    # cam-3 query: the cam-2 items (ids 5 and 1) are removed first; remaining ranked ids 5, 1 -> rank 2
    distances = [[0.1, 0.2, 0.3, 0.4]]
    result = evaluate_distmat(distances, [1], [5, 1, 5, 1], [3], [2, 2, 4, 5], "sysu_all")
    assert result.first_hit[0] == 1
    assert result.ap[0] == pytest.approx(1 / 2)
    assert result.mINP == pytest.approx(1 / 2)


def test_sysu_query_with_only_cam2_matches_is_skipped():
    result = evaluate_distmat([[0.1, 0.2], [0.1, 0.2]], [1, 1], [1, 2], [3, 6], [2, 1], "sysu_all")
    np.testing.assert_array_equal(result.valid, [False, True])


def test_unknown_protocol_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown evaluation protocol 'market1501'.*market, msvr310"):
        get_protocol("market1501")
    assert get_protocol(PROTOCOLS["regdb"]) is PROTOCOLS["regdb"]


def test_sysu_rejects_zero_based_cameras():
    with pytest.raises(ValueError, match="camera numbers 1-6; gallery camids contain \\[0\\]"):
        evaluate_distmat([[0.1, 0.2]], [1], [1, 2], [3], [0, 1], "sysu_all")


def test_msvr310_needs_scene_ids():
    with pytest.raises(ValueError, match="scene ids"):
        evaluate_distmat([[0.1]], [1], [1], [0], [1], "msvr310", query_sceneids=[1])
