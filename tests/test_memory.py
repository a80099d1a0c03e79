"""Cluster memories (momentum updates) and cross-modal cluster matching on hand-computed cases."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reidlab.engine.memory import ClusterMemory, cluster_centroids, greedy_match, hungarian_match


def test_centroids_ignore_outliers_and_are_normalised():
    features = torch.tensor([[2.0, 0.0], [0.0, 2.0], [3.0, 4.0], [9.0, 9.0]])
    centroids = cluster_centroids(features, np.array([0, 0, 1, -1]))
    torch.testing.assert_close(centroids, torch.tensor([[0.7071068, 0.7071068], [0.6, 0.8]]))


@pytest.mark.parametrize("mode", ["mean", "hard"])
def test_momentum_update_by_hand(mode):
    memory = ClusterMemory(2, temperature=0.5, momentum=0.5, mode=mode)
    memory.reset(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    inputs = torch.tensor([[0.0, 1.0], [1.0, 1.0], [0.0, 3.0]], requires_grad=True)
    targets = torch.tensor([0, 0, 1])
    loss = memory(inputs, targets)
    q = F.normalize(inputs.detach(), dim=1)
    logits = q @ torch.eye(2) / 0.5  # the bank before the update
    assert loss.item() == pytest.approx(F.cross_entropy(logits, targets).item())
    loss.backward()
    if mode == "mean":  # sample by sample: m = norm(0.5 m + 0.5 q)
        m0 = F.normalize(0.5 * torch.tensor([1.0, 0.0]) + 0.5 * q[0], dim=0)
        m0 = F.normalize(0.5 * m0 + 0.5 * q[1], dim=0)
    else:  # the least similar member of cluster 0 is q[0] (cos 0 < cos 0.707)
        m0 = F.normalize(0.5 * torch.tensor([1.0, 0.0]) + 0.5 * q[0], dim=0)
    torch.testing.assert_close(memory.bank[0], m0)
    torch.testing.assert_close(memory.bank[1], torch.tensor([0.0, 1.0]))
    assert inputs.grad is not None
    assert "bank" not in memory.state_dict()


def test_empty_memory_and_bad_mode_are_errors():
    with pytest.raises(RuntimeError, match="reset"):
        ClusterMemory(2)(torch.ones(1, 2), torch.zeros(1, dtype=torch.long))
    with pytest.raises(ValueError, match="mean, hard"):
        ClusterMemory(2, mode="median")


def test_hungarian_is_optimal_and_matches_leftover_rows_again():
    similarity = np.array([[0.9, 0.8], [0.85, 0.1], [0.2, 0.3]])
    # one-to-one on exp(-S): rows 0->1, 1->0 (cost e^-0.8 + e^-0.85 < e^-0.9 + e^-0.1); row 2 then its best
    np.testing.assert_array_equal(hungarian_match(similarity), [1, 0, 1])
    with pytest.raises(ValueError, match="at least as many rows"):
        hungarian_match(similarity.T)


def test_greedy_match_caps_columns_and_covers_every_column():
    similarity = np.array([[0.9, 0.1, 0.0],
                           [0.8, 0.2, 0.1],
                           [0.7, 0.3, 0.2],
                           [0.6, 0.5, 0.4]])
    row_to_col, col_to_rows = greedy_match(similarity, mu=2)
    # pass 1: (0,0), (1,0); row 2 finds column 0 full -> (2,1) at 0.3; row 3 -> (3,1) at 0.5 first
    np.testing.assert_array_equal(row_to_col, [0, 0, 1, 1])
    assert col_to_rows[0] == [0, 1] and col_to_rows[1] == [3, 2]
    # pass 2: column 2 has no partner; its best row is 3 (0.4)
    assert col_to_rows[2] == [3]
    with pytest.raises(ValueError, match="mu=1"):
        greedy_match(similarity, mu=1)
