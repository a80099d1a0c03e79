"""CMC / mAP / mINP: hand-computed cases and agreement with the per-query reference loop."""

import json
import math

import numpy as np
import pytest
import torch

import reidlab.eval.kernel as kernel
import reidlab.eval.metrics as metrics
from reidlab.bench import reference_evaluate
from reidlab.eval import evaluate, evaluate_distmat, mean_std, pairwise_distance

PROTOCOL_NAMES = ["market", "msvr310", "sysu_all", "sysu_indoor", "regdb"]


@pytest.fixture(params=["compiled", "torch"])
def scorer(request, monkeypatch):
    """Runs a test with the compiled CPU kernel, then with the tensor operations of CUDA on the CPU; the other path
    raises, so each run is known to score with its own. Yields the name and the row counts of the pieces scored."""
    pieces = []
    compiled = request.param == "compiled"

    def unused(*args):
        raise AssertionError(f"the {request.param} path was asked for")

    def recording(function, rows_of):
        def record(*args):
            pieces.append(rows_of(args))
            return function(*args)
        return record

    monkeypatch.setattr(metrics, "CPU_KERNEL", compiled)
    if compiled:
        monkeypatch.setattr(metrics, "_score_chunk", unused)
        monkeypatch.setattr(kernel, "score_rows", recording(kernel.score_rows, lambda args: len(args[0])))
    else:
        monkeypatch.setattr(kernel, "score_rows", unused)
        monkeypatch.setattr(metrics, "_score_chunk", recording(metrics._score_chunk, lambda args: len(args[0])))
    yield request.param, pieces
    assert pieces, f"nothing was scored by the {request.param} path"


def random_case(protocol: str, seed: int, num_query: int = 37, num_gallery: int = 101) -> dict:
    """Quantised distances (many exact ties) and query ids some of which are absent from the gallery."""
    rng = np.random.default_rng(seed)
    case = {
        "distmat": rng.integers(0, 6, (num_query, num_gallery)).astype(np.float32),
        "q_pids": rng.integers(0, 9, num_query),  # ids 7, 8 never occur in the gallery
        "g_pids": rng.integers(0, 7, num_gallery),
        "q_sceneids": rng.integers(0, 3, num_query),
        "g_sceneids": rng.integers(0, 3, num_gallery),
    }
    if protocol.startswith("sysu"):
        case["q_camids"] = rng.choice([3, 6], num_query)
        case["g_camids"] = rng.choice([1, 2, 4, 5], num_gallery)
    else:
        case["q_camids"] = rng.integers(0, 3, num_query)
        case["g_camids"] = rng.integers(0, 3, num_gallery)
    return case


def assert_same(result, ref) -> None:
    np.testing.assert_allclose(result.cmc, ref["cmc"], rtol=0, atol=1e-12)
    assert result.mAP == pytest.approx(ref["mAP"], abs=1e-12)
    assert result.mINP == pytest.approx(ref["mINP"], abs=1e-12)
    np.testing.assert_allclose(result.ap, ref["ap"], atol=1e-12)
    np.testing.assert_allclose(result.inp, ref["inp"], atol=1e-12)
    np.testing.assert_array_equal(result.first_hit, ref["first_hit"])
    np.testing.assert_array_equal(result.valid, ref["first_hit"] >= 0)


@pytest.mark.parametrize("protocol", PROTOCOL_NAMES)
@pytest.mark.parametrize("chunk_size", [1, 7, None])
@pytest.mark.parametrize("seed", [0, 1])
def test_distmat_matches_reference_with_ties_and_skipped_queries(protocol, chunk_size, seed, scorer):
    c = random_case(protocol, seed)
    result = evaluate_distmat(c["distmat"], c["q_pids"], c["g_pids"], c["q_camids"], c["g_camids"], protocol,
                              c["q_sceneids"], c["g_sceneids"], max_rank=30, chunk_size=chunk_size)
    ref = reference_evaluate(c["distmat"], c["q_pids"], c["g_pids"], c["q_camids"], c["g_camids"], protocol,
                             c["q_sceneids"], c["g_sceneids"], max_rank=30)
    assert_same(result, ref)
    assert result.num_skipped_queries > 0  # the absent ids
    assert result.num_valid_queries + result.num_skipped_queries == len(c["q_pids"])


@pytest.mark.parametrize("protocol", PROTOCOL_NAMES)
def test_features_match_reference(protocol, scorer):
    c = random_case(protocol, seed=3, num_query=29, num_gallery=83)
    rng = np.random.default_rng(5)
    q_feats, g_feats = rng.standard_normal((29, 16)), rng.standard_normal((83, 16))  # float64: no rounding ties
    result = evaluate(q_feats, g_feats, c["q_pids"], c["g_pids"], c["q_camids"], c["g_camids"], protocol,
                      c["q_sceneids"], c["g_sceneids"], chunk_size=4)
    distmat = pairwise_distance(q_feats, g_feats).numpy()
    ref = reference_evaluate(distmat, c["q_pids"], c["g_pids"], c["q_camids"], c["g_camids"], protocol,
                             c["q_sceneids"], c["g_sceneids"])
    assert_same(result, ref)


def test_integer_features_give_exact_ties_broken_by_gallery_index(scorer):
    c = random_case("market", seed=4, num_query=31, num_gallery=70)
    rng = np.random.default_rng(6)
    q_feats, g_feats = rng.integers(-1, 2, (31, 4)), rng.integers(-1, 2, (70, 4))
    result = evaluate(q_feats, g_feats, c["q_pids"], c["g_pids"], c["q_camids"], c["g_camids"],
                      normalize=False, chunk_size=6)
    exact = ((q_feats[:, None, :] - g_feats[None, :, :]) ** 2).sum(-1)  # at most 17 values over 70 items: ties
    ref = reference_evaluate(exact.astype(np.float64), c["q_pids"], c["g_pids"], c["q_camids"], c["g_camids"],
                             "market")
    assert_same(result, ref)


def test_hand_computed_ap_inp_and_cmc(scorer):
    # Gallery (given out of order) ranked by distance: same-camera true match (removed), other id,
    # true match, other id, true match -> remaining ranks: miss, HIT(2), miss, HIT(4).
    distances = [[0.3, 0.5, 0.1, 0.4, 0.2]]
    g_pids = [1, 1, 1, 3, 2]
    g_camids = [1, 2, 0, 0, 0]
    result = evaluate_distmat(distances, [1], g_pids, [0], g_camids, "market", max_rank=5)
    assert result.ap[0] == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert result.mAP == pytest.approx(0.5)
    assert result.mINP == pytest.approx(2 / 4)  # |G_i| / R_hard
    assert result.first_hit[0] == 1
    np.testing.assert_allclose(result.cmc[:5], [0, 1, 1, 1, 1])


def test_inp_counts_the_hardest_match(scorer):
    # hits at ranks 1 and 3 of 3: INP = 2/3, AP = (1 + 2/3) / 2
    result = evaluate_distmat([[0.1, 0.2, 0.3]], [7], [7, 8, 7], [0], [1, 1, 1], "market")
    assert result.mINP == pytest.approx(2 / 3)
    assert result.mAP == pytest.approx((1 + 2 / 3) / 2)
    assert result.rank(1) == 1.0


def test_ties_are_broken_by_gallery_index(scorer):
    earlier_miss = evaluate_distmat([[1.0, 1.0]], [1], [2, 1], [0], [1, 1], "regdb")
    earlier_hit = evaluate_distmat([[1.0, 1.0]], [1], [1, 2], [0], [1, 1], "regdb")
    assert earlier_miss.first_hit[0] == 1 and earlier_miss.mAP == pytest.approx(0.5)
    assert earlier_hit.first_hit[0] == 0 and earlier_hit.mAP == pytest.approx(1.0)


def test_cmc_has_at_least_20_ranks_and_is_padded_past_the_gallery():
    result = evaluate_distmat([[0.2, 0.1, 0.3]], [1], [2, 3, 1], [0], [1, 1, 1], "market", max_rank=5)
    assert len(result.cmc) == 20
    np.testing.assert_allclose(result.cmc, [0, 0] + [1] * 18)
    assert len(evaluate_distmat([[0.1]], [1], [1], [0], [1], max_rank=50).cmc) == 50


def test_skipped_queries_are_counted_and_excluded():
    result = evaluate_distmat([[0.1, 0.2], [0.1, 0.2], [0.3, 0.1]], [1, 9, 2], [1, 2], [0, 0, 0], [1, 1])
    np.testing.assert_array_equal(result.valid, [True, False, True])
    assert (result.num_valid_queries, result.num_skipped_queries) == (2, 1)
    assert math.isnan(result.ap[1]) and math.isnan(result.inp[1]) and result.first_hit[1] == -1
    assert result.mAP == pytest.approx(1.0)


def test_all_queries_skipped_is_an_error():
    with pytest.raises(ValueError, match="no query has a true match"):
        evaluate_distmat([[0.1, 0.2]], [1], [1, 2], [0], [0, 1], "market")  # its only match is same-camera


def test_summary_and_format():
    c = random_case("market", seed=8)
    result = evaluate_distmat(c["distmat"], c["q_pids"], c["g_pids"], c["q_camids"], c["g_camids"])
    summary = json.loads(json.dumps(result.summary()))
    for key in ["mAP", "mINP", "cmc", "num_valid_queries", "num_skipped_queries", "rank1", "rank5", "rank10",
                "rank20"]:
        assert key in summary
    assert len(summary["cmc"]) >= 20
    assert all(0 <= v <= 1 for v in summary["cmc"] + [summary["mAP"], summary["mINP"]])
    assert summary["rank1"] == summary["cmc"][0] and summary["rank20"] == summary["cmc"][19]
    text = result.format()
    assert "market" in text and f"{100 * result.mAP:6.2f}" in text and "R-20" in text


def test_mean_std_over_trials():
    one = evaluate_distmat([[0.1, 0.2]], [1], [1, 2], [0], [1, 1])  # AP 1
    half = evaluate_distmat([[0.1, 0.2]], [1], [2, 1], [0], [1, 1])  # AP 0.5
    stats = mean_std([one, half])
    assert stats["trials"] == 2
    assert stats["mAP"]["mean"] == pytest.approx(0.75)
    assert stats["mAP"]["std"] == pytest.approx(np.std([1, 0.5], ddof=1))
    assert stats["rank1"] == {"mean": pytest.approx(0.5), "std": pytest.approx(np.std([1, 0], ddof=1))}
    assert mean_std([one])["mINP"]["std"] == 0.0
    with pytest.raises(ValueError):
        mean_std([])


def test_cosine_and_euclidean_rank_identically_and_tensors_are_accepted():
    rng = np.random.default_rng(9)
    q, g = rng.standard_normal((12, 8)), rng.standard_normal((40, 8))
    pids_q, pids_g = rng.integers(0, 4, 12), rng.integers(0, 4, 40)
    cams_q, cams_g = rng.integers(0, 2, 12), rng.integers(0, 2, 40)
    euclid = evaluate(q, g, pids_q, pids_g, cams_q, cams_g)
    cosine = evaluate(torch.from_numpy(q), torch.from_numpy(g), torch.from_numpy(pids_q), pids_g, cams_q, cams_g,
                      metric="cosine", device="cpu")
    np.testing.assert_allclose(euclid.ap, cosine.ap)
    np.testing.assert_array_equal(euclid.first_hit, cosine.first_hit)


def test_no_chunk_exceeds_chunk_size_rows(monkeypatch, scorer):
    _, seen = scorer
    c = random_case("market", seed=10, num_query=23, num_gallery=50)
    evaluate_distmat(c["distmat"], c["q_pids"], c["g_pids"], c["q_camids"], c["g_camids"], chunk_size=5)
    assert seen == [5, 5, 5, 5, 3]

    seen.clear()
    monkeypatch.setattr(metrics, "DEFAULT_CHUNK_BYTES", 4 * 4 * 50)  # blocks of 4 rows of float32 distances
    monkeypatch.setattr(metrics, "MIN_BLOCK_ROWS", 1)
    rng = np.random.default_rng(0)
    evaluate(rng.standard_normal((23, 6)), rng.standard_normal((50, 6)), c["q_pids"], c["g_pids"], c["q_camids"],
             c["g_camids"])
    assert max(seen) == 4 and sum(seen) == 23

    seen.clear()
    monkeypatch.setattr(metrics, "SCORE_CELLS", 3 * 50)  # each block of 5 is scored 3 rows at a time
    evaluate_distmat(c["distmat"], c["q_pids"], c["g_pids"], c["q_camids"], c["g_camids"], chunk_size=5)
    assert sorted(seen) == sorted([3, 2] * 4 + [3])  # pieces of a block may run in parallel


@pytest.mark.parametrize(
    "change, message",
    [
        ({"q_pids": [1, 2]}, "query_pids must be 1-D with one entry per row"),
        ({"g_camids": [0, 1]}, "gallery_camids must be 1-D"),
        ({"q_pids": [[1], [2], [3]]}, "query_pids must be 1-D"),
        ({"q_pids": [0.5, 1.0, 2.0]}, "query_pids must hold integers"),
        ({"g_feats": np.ones((4, 5))}, "dimension"),
        ({"q_feats": np.full((3, 4), np.nan)}, "query_feats contains NaN"),
        ({"g_feats": np.array([[1.0, np.inf, 0, 0]] * 4)}, "gallery_feats contains NaN or infinite"),
        ({"q_feats": np.ones(4)}, "query_feats must be 2-D"),
        ({"metric": "manhattan"}, "unknown metric"),
        ({"protocol": "viper"}, "unknown evaluation protocol"),
        ({"protocol": "msvr310"}, "scene ids"),
        ({"protocol": "sysu_all"}, "camera numbers 1-6"),
        ({"max_rank": 0}, "max_rank"),
        ({"chunk_size": 0}, "chunk_size"),
    ],
)
def test_bad_arguments(change, message):
    args = {"q_feats": np.ones((3, 4)), "g_feats": np.ones((4, 4)), "q_pids": [1, 2, 3], "g_pids": [1, 2, 3, 4],
            "q_camids": [0, 0, 0], "g_camids": [1, 1, 1, 1], "protocol": "market", "metric": "euclidean",
            "max_rank": 50, "chunk_size": None}
    args.update(change)
    with pytest.raises(ValueError, match=message):
        evaluate(args["q_feats"], args["g_feats"], args["q_pids"], args["g_pids"], args["q_camids"],
                 args["g_camids"], args["protocol"], metric=args["metric"], max_rank=args["max_rank"],
                 chunk_size=args["chunk_size"])


def test_bad_distance_matrix():
    with pytest.raises(ValueError, match="2-D"):
        evaluate_distmat([0.1, 0.2], [1], [1, 2], [0], [1, 1])
    with pytest.raises(ValueError, match="NaN or infinite"):
        evaluate_distmat([[0.1, np.inf]], [1], [1, 2], [0], [1, 1])
    with pytest.raises(ValueError, match="gallery_pids must be 1-D"):
        evaluate_distmat([[0.1, 0.2]], [1], [1, 2, 3], [0], [1, 1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("protocol", PROTOCOL_NAMES)
def test_cuda_gives_the_cpu_results(protocol):
    c = random_case(protocol, seed=11, num_query=53, num_gallery=240)  # quantised distances: many exact ties
    args = (c["q_pids"], c["g_pids"], c["q_camids"], c["g_camids"], protocol, c["q_sceneids"], c["g_sceneids"])
    cpu = evaluate_distmat(c["distmat"], *args, chunk_size=7, device="cpu")
    cuda = evaluate_distmat(c["distmat"], *args, chunk_size=7, device="cuda")
    assert cpu.num_skipped_queries > 0
    np.testing.assert_array_equal(cuda.first_hit, cpu.first_hit)
    np.testing.assert_allclose(cuda.ap, cpu.ap, rtol=0, atol=1e-12)
    np.testing.assert_allclose(cuda.inp, cpu.inp, rtol=0, atol=1e-12)
    np.testing.assert_allclose(cuda.cmc, cpu.cmc, rtol=0, atol=1e-12)


@pytest.mark.parametrize("chunk_size", [None, 13])
def test_benchmark_scale_features_with_many_matches_per_query_match_reference(chunk_size, scorer):
    # ~30 true matches per query spread over most of the distance range: the histogram bins, not the exact
    # placement, decide most ranks here.
    from reidlab.bench import rgbnt100_like

    t = rgbnt100_like(seed=2, scale=0.2)
    result = evaluate(t["query_feats"], t["gallery_feats"], t["query_pids"], t["gallery_pids"], t["query_camids"],
                      t["gallery_camids"], chunk_size=chunk_size)
    step = chunk_size or len(t["query_feats"])  # the same products (BLAS rounding depends on the block)
    distmat = np.concatenate([pairwise_distance(t["query_feats"][i:i + step], t["gallery_feats"]).numpy()
                              for i in range(0, len(t["query_feats"]), step)])
    ref = reference_evaluate(distmat, t["query_pids"], t["gallery_pids"], t["query_camids"], t["gallery_camids"],
                             "market")
    assert_same(result, ref)


@pytest.mark.parametrize("protocol", PROTOCOL_NAMES)
def test_special_cells_are_the_true_matches_and_removed_items_of_the_dense_rule(protocol):
    from reidlab.eval.protocols import Labels, get_protocol

    c = random_case(protocol, seed=12, num_query=40, num_gallery=300)
    query = Labels(*(torch.as_tensor(c[k]) for k in ("q_pids", "q_camids", "q_sceneids")))
    gallery = Labels(*(torch.as_tensor(c[k]) for k in ("g_pids", "g_camids", "g_sceneids")))
    proto = get_protocol(protocol)
    cells = metrics._LabelGroups(gallery).special_cells(query, proto)
    removed = proto.remove(query, gallery)
    matches = (query.pids[:, None] == gallery.pids[None, :]) & ~removed
    for rows, cols, start, expected in [(cells.match_rows, cells.match_cols, cells.match_start, matches),
                                        (cells.removed_rows, cells.removed_cols, cells.removed_start, removed)]:
        found = torch.zeros_like(removed)
        found[rows, cols] = True
        assert torch.equal(found, expected) and len(rows) == int(expected.sum())  # each cell once
        assert (rows.diff() >= 0).all() and start == [0] + expected.sum(1).cumsum(0).tolist()
    match_rows, match_cols, removed_rows, removed_cols = cells.rows(10, 25)  # a piece: rows counted from its first
    assert torch.equal(match_rows + 10, cells.match_rows[(cells.match_rows >= 10) & (cells.match_rows < 25)])
    assert torch.equal(removed_cols, cells.removed_cols[(cells.removed_rows >= 10) & (cells.removed_rows < 25)])


@pytest.mark.parametrize("protocol", PROTOCOL_NAMES)
def test_many_tied_matches_scored_in_pieces_match_reference(protocol, monkeypatch, scorer):
    # Few ids over a larger gallery and five distance levels: most items share a bin with a match, and ties
    # between matches and other items are decided by gallery index. Blocks of 13 queries (not dividing 150),
    # scored 4 rows at a time.
    c = random_case(protocol, seed=13, num_query=150, num_gallery=900)
    c["distmat"] = (c["distmat"] % 5) / 4
    monkeypatch.setattr(metrics, "SCORE_CELLS", 4 * 900)
    args = (c["q_pids"], c["g_pids"], c["q_camids"], c["g_camids"], protocol, c["q_sceneids"], c["g_sceneids"])
    result = evaluate_distmat(c["distmat"], *args, chunk_size=13)
    assert_same(result, reference_evaluate(c["distmat"], *args))
    assert result.num_skipped_queries > 0


@pytest.mark.parametrize("protocol", PROTOCOL_NAMES)
def test_pieces_scored_on_worker_threads_give_the_single_thread_results(protocol, monkeypatch, scorer):
    # 3 workers for blocks of 17 queries cut into pieces of 5 rows (neither divides the other nor 101): ties,
    # removals and queries without a match fall on every worker.
    c = random_case(protocol, seed=14, num_query=101, num_gallery=400)
    monkeypatch.setattr(metrics, "SCORE_CELLS", 5 * 400)
    args = (c["q_pids"], c["g_pids"], c["q_camids"], c["g_camids"], protocol, c["q_sceneids"], c["g_sceneids"])
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = evaluate_distmat(c["distmat"], *args, chunk_size=17)
        torch.set_num_threads(3)
        threaded = evaluate_distmat(c["distmat"], *args, chunk_size=17)
        assert torch.get_num_threads() == 3  # the caller's count survives the one-thread workers
    finally:
        torch.set_num_threads(threads)
    assert single.num_skipped_queries > 0
    for name in ("ap", "inp", "first_hit", "cmc"):
        np.testing.assert_array_equal(getattr(threaded, name), getattr(single, name))
    assert_same(threaded, reference_evaluate(c["distmat"], *args))


def test_key_order_of_float32_bits_equals_the_lexicographic_sorts():
    # Negative, tied and signed-zero distances: the one-integer key (float32) and the three stable sorts (the
    # other dtypes' path) put the cells in the same (row, distance, gallery index) order.
    rng = np.random.default_rng(15)
    dist = torch.from_numpy(rng.integers(-3, 4, (6, 40)).astype(np.float32) / 2)
    dist[dist == 0] = torch.tensor([0.0, -0.0])[torch.randint(0, 2, (int((dist == 0).sum()),))]
    cells = torch.from_numpy(np.sort(rng.choice(240, 90, replace=False)))
    rows, cols = cells // 40, cells % 40
    fast = metrics._key_order(dist.view(-1), 40, rows[:30], cols[:30], rows[30:], cols[30:])
    slow = metrics._key_order(dist.double().view(-1), 40, rows[:30], cols[:30], rows[30:], cols[30:])
    for a, b in zip(fast, slow, strict=True):
        assert torch.equal(a, b)
    order = sorted(range(90), key=lambda i: (int(rows[i]), float(dist.view(-1)[cells[i]]), int(cols[i])))
    assert torch.equal(fast[1], cells[order]) and torch.equal(fast[2], torch.arange(90)[order] < 30)


def test_query_blocks_are_equal_and_cover_the_queries(monkeypatch):
    assert metrics.query_blocks(23, 50, chunk_size=5) == [(0, 5), (5, 10), (10, 15), (15, 20), (20, 23)]
    monkeypatch.setattr(metrics, "DEFAULT_CHUNK_BYTES", 4 * 10 * 50)  # about 10 rows of 50
    monkeypatch.setattr(metrics, "MIN_BLOCK_ROWS", 1)
    assert metrics.query_blocks(23, 50) == [(0, 8), (8, 16), (16, 23)]  # 3 blocks as for 10 rows, equal
    monkeypatch.setattr(metrics, "MIN_BLOCK_ROWS", 16)
    assert metrics.query_blocks(23, 50) == [(0, 12), (12, 23)]



def test_on_threads_the_product_has_them_all_and_the_calling_threads_other_tensor_operations_one(monkeypatch):
    # Parallel tensor operations leave OpenMP threads spinning on the cores the scoring workers need: only the
    # matrix product may use them; the caller's count survives.
    seen = []

    def record(cls, name):
        original = getattr(cls, name)

        def recorded(self, *args, **kwargs):
            seen.append((name, torch.get_num_threads()))
            return original(self, *args, **kwargs)

        monkeypatch.setattr(cls, name, recorded)

    record(metrics._LabelGroups, "special_cells")
    record(metrics._Distances, "dot")
    c = random_case("market", seed=16, num_query=30, num_gallery=60)
    rng = np.random.default_rng(17)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        evaluate(rng.standard_normal((30, 8)), rng.standard_normal((60, 8)), c["q_pids"], c["g_pids"], c["q_camids"],
                 c["g_camids"], chunk_size=12)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    assert seen == [("special_cells", 1), ("dot", 2)] * 3
