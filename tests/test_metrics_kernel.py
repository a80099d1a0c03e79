"""The compiled CPU scoring kernel (reidlab.eval.kernel) called directly, against the brute-force reference."""

import numpy as np
import pytest
import torch

import reidlab.eval.kernel as kernel
import reidlab.eval.metrics as metrics
from reidlab.bench import reference_evaluate
from reidlab.eval.protocols import Labels, get_protocol


def labelled_case(protocol: str, seed: int, num_query: int, num_gallery: int, num_ids: int) -> dict:
    """Labels of one protocol; query ids ``num_ids`` and up never occur in the gallery (unmatched queries)."""
    rng = np.random.default_rng(seed)
    case = {"q_pids": rng.integers(0, num_ids + 2, num_query), "g_pids": rng.integers(0, num_ids, num_gallery),
            "q_sceneids": rng.integers(0, 3, num_query), "g_sceneids": rng.integers(0, 3, num_gallery)}
    if protocol.startswith("sysu"):
        case["q_camids"], case["g_camids"] = rng.choice([3, 6], num_query), rng.choice([1, 2, 4, 5], num_gallery)
    else:
        case["q_camids"], case["g_camids"] = rng.integers(0, 3, num_query), rng.integers(0, 3, num_gallery)
    return case


def kernel_scores(values: np.ndarray, case: dict, protocol: str, affine=(1.0, 0.0, -np.inf)) -> dict:
    """``kernel.score_rows`` on all rows at once, with the true matches and removed items that evaluate() finds."""
    proto = get_protocol(protocol)
    query = Labels(*(torch.as_tensor(case[k]) for k in ("q_pids", "q_camids", "q_sceneids")))
    gallery = Labels(*(torch.as_tensor(case[k]) for k in ("g_pids", "g_camids", "g_sceneids")))
    cells = metrics._LabelGroups(gallery).special_cells(query, proto)
    ids = torch.unique(gallery.pids, return_inverse=True)[1].numpy() if proto.dedup_cmc else np.empty(0, np.int64)
    rows = len(values)
    out = {"ap": np.zeros(rows), "inp": np.zeros(rows), "first_hit": np.zeros(rows, dtype=np.int64)}
    dtype = values.dtype.type
    kernel.score_rows(values, *(dtype(x) for x in affine), cells.match_cols.numpy(), np.asarray(cells.match_start),
                      cells.removed_cols.numpy(), np.asarray(cells.removed_start), ids, out["ap"], out["inp"],
                      out["first_hit"])
    return out


def assert_same_rows(out: dict, ref: dict) -> None:
    np.testing.assert_array_equal(out["first_hit"], ref["first_hit"])
    np.testing.assert_allclose(out["ap"], ref["ap"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(out["inp"], ref["inp"], rtol=0, atol=1e-12)


def reference(distances: np.ndarray, case: dict, protocol: str) -> dict:
    return reference_evaluate(distances, case["q_pids"], case["g_pids"], case["q_camids"], case["g_camids"], protocol,
                              case["q_sceneids"], case["g_sceneids"])


@pytest.mark.parametrize("protocol", ["market", "msvr310", "sysu_all", "regdb"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("levels", [3, 40, None])
def test_kernel_matches_reference_with_ties_signed_zeros_and_removals(protocol, dtype, levels):
    # Few identities over a large gallery: up to ~100 matches per query, dozens of them tied in one code when the
    # distances take 3 levels (the sorted and binary-searched path), one or two per code with 40 levels or none.
    case = labelled_case(protocol, seed=21, num_query=40, num_gallery=600, num_ids=5)
    rng = np.random.default_rng(22)
    if levels is None:
        values = rng.standard_normal((40, 600)).astype(dtype)
    else:
        values = (rng.integers(-levels // 2, levels - levels // 2, (40, 600)) / 2).astype(dtype)
        values[values == 0] = np.array([0.0, -0.0], dtype=dtype)[rng.integers(0, 2, int((values == 0).sum()))]
    out = kernel_scores(values, case, protocol)
    ref = reference(values.astype(np.float64), case, protocol)
    assert (ref["first_hit"] < 0).any() and (ref["first_hit"] >= 0).any()  # unmatched and matched queries
    assert_same_rows(out, ref)


def test_kernel_applies_the_finish_as_the_tensor_operations_round_it():
    # The inner products as evaluate() hands them over: the kernel's 2 - 2 x (clamped at 0) and 1 - x must rank
    # exactly as the distances _Distances.finish writes, rounding ties included (float32 products of few values).
    case = labelled_case("market", seed=23, num_query=30, num_gallery=300, num_ids=6)
    rng = np.random.default_rng(24)
    q = torch.from_numpy(rng.integers(-2, 3, (30, 8)).astype(np.float32))
    g = torch.from_numpy(rng.integers(-2, 3, (300, 8)).astype(np.float32))
    for metric in ("euclidean", "cosine"):
        distances = metrics._Distances(q, g, metric, True, "cpu")
        finished = distances(0, 30).numpy()
        out = kernel_scores(distances.dot(0, 30).numpy(), case, "market", distances.affine)
        assert_same_rows(out, reference(finished.astype(np.float64), case, "market"))


def test_kernel_handles_distances_over_the_whole_float64_range():
    # Codes come from halved distances: a span of nearly 2 * 1.8e308 overflows nothing.
    case = labelled_case("regdb", seed=25, num_query=20, num_gallery=200, num_ids=4)
    rng = np.random.default_rng(26)
    values = rng.choice(np.array([-1.7e308, -1e300, -1.0, 0.0, 5e-324, 1.0, 1e300, 1.7e308]), (20, 200))
    assert_same_rows(kernel_scores(values, case, "regdb"), reference(values, case, "regdb"))


def test_jit_without_a_cache_directory_still_compiles():
    # Code with no source file on disk has no cache locator: numba refuses cache=True, the kernel compiles anyway.
    namespace: dict = {}
    exec(compile("def twice(x):\n    return 2 * x\n", "<no file>", "exec"), namespace)
    assert kernel._jit(namespace["twice"])(21) == 42
