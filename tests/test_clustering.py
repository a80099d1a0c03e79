"""k-reciprocal Jaccard and DBSCAN pseudo-labels vs a brute-force reference; resume of a clustering run."""

import numpy as np
import pytest
import torch

from reidlab.bench_cluster import clustered_features, peer_jaccard_distance, peer_knn
from reidlab.engine.clustering import ClusteringStep, dbscan_labels, jaccard_distance, knn, pseudo_labels
from reidlab.engine.trainer import fit


def brute_force_jaccard(x: np.ndarray, k1: int, k2: int) -> np.ndarray:
    """Zhong et al. written out set by set from the full distance matrix (lists of k1 / round(k1/2)+1)."""
    n = len(x)
    d = 2 - 2 * x.astype(np.float64) @ x.T.astype(np.float64)
    rank = np.argsort(d, axis=1, kind="stable")

    def reciprocal(i, k):
        return {j for j in rank[i, :k] if i in rank[j, :k]}

    half = int(np.around(k1 / 2)) + 1
    v = np.zeros((n, n))
    for i in range(n):
        r = reciprocal(i, k1)
        expanded = set(r)
        for c in r:
            rc = reciprocal(c, half)
            if len(rc & r) > 2 / 3 * len(rc):
                expanded |= rc
        members = sorted(expanded)
        w = np.exp(-d[i, members])
        v[i, members] = w / w.sum()
    v = np.stack([v[rank[i, :k2]].mean(0) for i in range(n)])
    jaccard = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            jaccard[i, j] = 1 - np.minimum(v[i], v[j]).sum() / np.maximum(v[i], v[j]).sum()
    return jaccard, rank


@pytest.mark.parametrize("n, k1, k2", [(90, 10, 3), (61, 8, 1), (120, 20, 6)])
def test_jaccard_matches_the_brute_force_reference(n, k1, k2):
    x = clustered_features(n, seed=n, dim=32, per_id=6)
    reference, rank = brute_force_jaccard(x, k1, k2)
    np.testing.assert_array_equal(np.sort(knn(torch.from_numpy(x), k1), 1), np.sort(rank[:, :k1], 1))
    ours = jaccard_distance(torch.from_numpy(x), k1, k2)
    dense = np.ones((n, n))
    coo = ours.tocoo()
    dense[coo.row, coo.col] = coo.data
    np.testing.assert_allclose(dense, reference, atol=1e-5)
    assert (reference[dense == 1] > 1 - 1e-9).all()  # absent pairs are exactly those at distance 1
    assert (ours.diagonal() < 1e-5).all()


@pytest.mark.parametrize("block", [7, 50, 2048])
def test_knn_in_tiles_matches_brute_force(block):
    # 7 and 50 do not divide 230: many tiles, a short last one, rows whose k-th best improves tile after tile
    x = clustered_features(230, seed=4, dim=32, per_id=6)
    d = 2 - 2 * x.astype(np.float64) @ x.T.astype(np.float64)
    expected = np.argsort(d, axis=1, kind="stable")[:, :12]
    ours = knn(torch.from_numpy(x), 12, block=block)
    np.testing.assert_array_equal(ours[:, 0], np.arange(230))  # itself first
    np.testing.assert_array_equal(np.sort(ours, 1), np.sort(expected, 1))


def test_knn_order_is_the_exact_one_with_ties_broken_by_index():
    # Exact duplicates (equal float32 and float64 distances) and near-duplicates (distances 1e-8 apart, below
    # float32 resolution): the order inside each list is the float64 one, ties by index, as query expansion
    # (first k2) and the half-size reciprocal sets (first k1/2 + 1) need it.
    x = clustered_features(200, seed=6, dim=32, per_id=8)
    x[150:170] = x[0:20]
    x[170:190] = x[20:40] + np.float32(1e-8)
    x64 = x.astype(np.float64)
    d = 2 - 2 * x64 @ x64.T
    expected = np.lexsort((np.broadcast_to(np.arange(200), d.shape), d), axis=1)[:, :12]
    np.testing.assert_array_equal(knn(torch.from_numpy(x), 12, block=64), expected)


@pytest.mark.parametrize("k", [19, 23, 25, 27])
def test_copies_of_one_vector_rank_by_index_wherever_they_sit_in_a_list(k):
    # A batched float64 product rounded each pair by where it sat in the list (some list lengths take a vectorised
    # body and a scalar tail): copies of one vector came 1e-16 apart and out of index order. Ten groups of k
    # ViT-wide rows: an anchor and k - 1 copies of a vector near it. The anchor's list is itself, then the copies in
    # index order; a copy's list is the copies in index order, then the anchor.
    anchors = clustered_features(10, seed=8, dim=384, per_id=1)
    near = anchors + np.random.default_rng(9).normal(0, 0.02, anchors.shape).astype(np.float32)
    near /= np.linalg.norm(near, axis=1, keepdims=True)
    groups = [np.concatenate([a[None], np.repeat(b[None], k - 1, 0)]) for a, b in zip(anchors, near, strict=True)]
    x = np.concatenate(groups)
    ranked = knn(torch.from_numpy(x), k, block=64)
    group = np.arange(10 * k) // k * k
    is_anchor = (np.arange(10 * k) % k == 0)[:, None]
    expected = group[:, None] + np.where(is_anchor, np.arange(k), np.r_[1:k, 0])
    np.testing.assert_array_equal(ranked, expected)


def test_peer_reimplementation_agrees_and_max_distance_keeps_only_close_pairs():
    x = clustered_features(150, seed=3, dim=64, per_id=8)
    peer = peer_jaccard_distance(x, 12, 4, initial_rank=peer_knn(x, 12))
    close = jaccard_distance(torch.from_numpy(x), 12, 4, max_distance=0.6).tocoo()
    assert (close.data <= 0.6).all()
    np.testing.assert_allclose(close.data, peer[close.row, close.col], atol=1e-5)
    assert close.nnz == (peer <= 0.6).sum()


def test_dbscan_on_the_sparse_matrix_equals_dense_dbscan():
    from sklearn.cluster import DBSCAN

    x = clustered_features(200, seed=5, dim=64, per_id=10)
    sparse = jaccard_distance(torch.from_numpy(x), 15, 4, max_distance=0.6)
    dense = np.ones((200, 200), dtype=np.float32)
    coo = sparse.tocoo()
    dense[coo.row, coo.col] = coo.data
    expected = DBSCAN(eps=0.6, min_samples=4, metric="precomputed").fit_predict(dense)
    labels = dbscan_labels(sparse)
    np.testing.assert_array_equal(labels, expected)
    assert labels.max() >= 5


def test_explicit_zero_distances_count_as_neighbours():
    import scipy.sparse as sp

    # four points at distance 0 from each other: one cluster, although every stored value is 0
    zeros = sp.csr_matrix((np.zeros(16), (np.repeat(np.arange(4), 4), np.tile(np.arange(4), 4))), shape=(5, 5))
    np.testing.assert_array_equal(dbscan_labels(zeros, eps=0.6, min_samples=4), [0, 0, 0, 0, -1])


def test_bad_arguments():
    x = torch.from_numpy(clustered_features(20, dim=8, per_id=5))
    with pytest.raises(ValueError, match="k must be in 1..20"):
        knn(x, 21)
    with pytest.raises(ValueError, match="k2 <= k1"):
        jaccard_distance(x, 5, 6)


class Points(torch.utils.data.Dataset):
    def __init__(self, x):
        self.x = x

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "index": i}


class Embed(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(16, 16)

    def forward(self, batch):
        return self.linear(batch["x"])


class MemoryLoss(torch.nn.Module):
    """Cross-entropy against the cluster memory, labels looked up from the current pseudo-labels."""

    def __init__(self):
        super().__init__()
        from reidlab.engine.memory import ClusterMemory

        self.memory = ClusterMemory(16, momentum=0.2)
        self.labels = torch.zeros(0, dtype=torch.long)

    def forward(self, outputs, batch):
        return {"memory": self.memory(outputs, self.labels[batch["index"]])}


def clustering_run(run_dir, interrupt_at=None):
    from reidlab.engine.memory import cluster_centroids

    torch.manual_seed(0)
    x = torch.from_numpy(clustered_features(120, seed=1, dim=16, per_id=10))
    model, criterion = Embed(), MemoryLoss()

    def extract(m):
        return m({"x": x})

    def rebuild(labels, features, epoch):
        if epoch == interrupt_at:
            raise KeyboardInterrupt
        criterion.memory.reset(cluster_centroids(features, labels))
        criterion.labels = torch.as_tensor(labels)
        clustered = np.flatnonzero(labels >= 0).tolist()
        sampler = torch.utils.data.SubsetRandomSampler(clustered, generator=torch.Generator().manual_seed(epoch))
        return torch.utils.data.DataLoader(Points(x), batch_size=16, sampler=sampler, drop_last=True)

    step = ClusteringStep(extract, rebuild, k1=10, k2=3, eps=0.6, min_samples=4)
    config = {"epochs": 3, "optimizer": "sgd", "lr": 0.1, "seed": 1}
    first = torch.utils.data.DataLoader(Points(x), batch_size=16)
    fit(model, criterion, first, config, run_dir=run_dir, epoch_hook=step, progress=False)
    return step, model


def test_resumed_clustering_run_reproduces_its_pseudo_labels(tmp_path):
    reference, model = clustering_run(tmp_path / "a")
    assert sorted(reference.history) == [0, 1, 2] and reference.history[0].max() >= 3
    with pytest.raises(KeyboardInterrupt):
        clustering_run(tmp_path / "b", interrupt_at=2)
    resumed, resumed_model = clustering_run(tmp_path / "b")
    assert sorted(resumed.history) == [2]  # epochs 0-1 came from the checkpoint
    np.testing.assert_array_equal(resumed.history[2], reference.history[2])
    for a, b in zip(model.state_dict().values(), resumed_model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_pseudo_labels_find_the_generated_identities():
    x = clustered_features(300, seed=2, dim=128, per_id=10)
    labels = pseudo_labels(torch.from_numpy(x), k1=20, k2=6)
    assert 15 <= labels.max() + 1 <= 40
