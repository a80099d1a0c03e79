"""``reidlab bench cluster`` at a tiny size: both implementations run and agree."""

from reidlab.bench_cluster import bench_cluster


def test_bench_cluster_agrees_with_the_peer_at_a_small_size():
    (row,) = bench_cluster(sizes=(400,), threads=1)
    assert row["identical"] is True and row["same_neighbours"] and row["same_labels"]
    assert row["jaccard_max_gap"] <= 1e-5 and row["pairs_within_eps_not_stored"] == 0
    assert row["clusters"] > 10 and row["ours_s"] > 0 and row["peer_peak_mib"] > 0
