"""Analysis kit: t-SNE, Grad-CAM, distance distributions, rank lists, curves, tables, deterministic PNGs."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import timm  # noqa: E402
import torch  # noqa: E402
from matplotlib.collections import PathCollection, PolyCollection  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402
from PIL import Image  # noqa: E402
from pytorch_grad_cam.utils.image import scale_cam_image  # noqa: E402
from torch import nn  # noqa: E402

from reidlab.data.records import ImageRef, Record  # noqa: E402
from reidlab.eval import evaluate_distmat, pairwise_distance  # noqa: E402
from reidlab.viz import (  # noqa: E402
    EmbeddingSimilarityTarget,
    IdentityLogitTarget,
    ModalityInput,
    ablation_table,
    condition_label,
    denormalize,
    distance_bins,
    distance_distributions,
    gradcam_maps,
    mean_std_frame,
    pick_diverse,
    plot_cmc,
    plot_distance_distributions,
    plot_gradcam,
    plot_rank_list,
    plot_samples,
    plot_sweep,
    plot_tsne,
    plot_tsne_pair,
    protocol_keep_mask,
    rank_list,
    save_figure,
    select_identities,
    separation,
    sweep_stats,
    to_display,
    to_markdown,
    tsne_embedding,
    vit_reshape_transform,
)
from reidlab.viz.style import (  # noqa: E402
    CORRECT_COLOR,
    DEGRADED_COLOR,
    INCORRECT_COLOR,
    MODALITY_MARKERS,
    PALETTE,
)

MODS = ("rgb", "nir", "tir")


@pytest.fixture(autouse=True)
def one_torch_thread():
    """The tiny models run fastest on one thread (and do not stall when other processes load the CPU)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def clustered(num_ids: int = 4, per_id: int = 6, dim: int = 8, seed: int = 0):
    """Features with identity clusters; modality cycles rgb/nir/tir within each identity."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num_ids, dim))
    pids = np.repeat(np.arange(num_ids) * 10 + 3, per_id)
    feats = centres[np.repeat(np.arange(num_ids), per_id)] + 0.3 * rng.normal(size=(num_ids * per_id, dim))
    mods = [MODS[i % 3] for i in range(len(pids))]
    return feats.astype(np.float32), pids, mods


def png_bytes(fig, path) -> bytes:
    return save_figure(fig, path).read_bytes()


# ------------------------------------------------------------------------------------------------ style


def test_save_figure_is_deterministic_atomic_and_png_only(tmp_path):
    feats, pids, mods = clustered()
    fig = plot_distance_distributions(feats, pids, mods)
    first = png_bytes(fig, tmp_path / "a" / "one.png")
    with matplotlib.rc_context({"font.size": 20, "figure.dpi": 50, "savefig.facecolor": "black"}):
        again = png_bytes(plot_distance_distributions(feats, pids, mods), tmp_path / "two.png")
    assert first[:8] == b"\x89PNG\r\n\x1a\n" and first == again
    assert b"Software" not in first and b"matplotlib" not in first
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["one.png"]
    assert (tmp_path / "a" / "one.png").stat().st_mode & 0o777 == 0o644
    with pytest.raises(ValueError, match="PNG"):
        save_figure(fig, tmp_path / "fig.pdf")


def test_to_display_and_denormalize():
    image = torch.rand(3, 4, 2)
    normalised = (image - torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(
        3, 1, 1)
    torch.testing.assert_close(denormalize(normalised), image)
    assert denormalize(torch.full((2, 3, 1, 1), 9.0)).max() == 1.0
    np.testing.assert_allclose(to_display(image), image.permute(1, 2, 0).numpy())
    assert to_display(np.full((4, 2, 3), 255, np.uint8)).max() == 1.0
    assert to_display(np.zeros((4, 2))).shape == (4, 2, 3)
    with pytest.raises(ValueError, match="denormalize"):
        to_display(normalised)
    with pytest.raises(ValueError, match="RGB image"):
        to_display(np.zeros((4, 2, 5)))


# ------------------------------------------------------------------------------------------------ t-SNE


def test_select_identities_takes_the_first_sorted_ids():
    assert select_identities([9, 5, 3, 5, 7], 2).tolist() == [False, True, True, True, False]
    with pytest.raises(ValueError, match="max_ids"):
        select_identities([1], 0)


def test_tsne_is_deterministic_and_normalises(tmp_path):
    feats, pids, mods = clustered()
    a, b = tsne_embedding(feats, seed=0), tsne_embedding(4 * feats, seed=0)
    assert a.shape == (len(pids), 2)
    np.testing.assert_array_equal(a, b)  # L2-normalised first (a power-of-two scale normalises exactly)
    fig = plot_tsne(feats, pids, mods, max_ids=3, title="t")
    assert png_bytes(fig, tmp_path / "1.png") == png_bytes(plot_tsne(feats, pids, mods, max_ids=3, title="t"),
                                                           tmp_path / "2.png")


def test_tsne_colours_identities_and_marks_modalities():
    feats, pids, mods = clustered(num_ids=4)
    ax = plot_tsne(feats, pids, mods, max_ids=3).axes[0]
    assert len(ax.collections) == 3  # one scatter per modality
    shown = np.unique(pids)[:3]
    expected = {to_rgba(PALETTE[i]) for i in range(3)}
    colours = {tuple(c) for coll in ax.collections for c in coll.get_facecolors()}
    assert colours == expected and sum(len(c.get_offsets()) for c in ax.collections) == np.isin(pids, shown).sum()
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == list(MODS)
    assert [h.get_marker() for h in legend.legend_handles] == [MODALITY_MARKERS[m] for m in MODS]
    fused = plot_tsne(feats, pids, ["fused"] * len(pids)).axes[0]
    assert fused.get_legend().legend_handles[0].get_marker() == "*"


def test_tsne_pair_and_errors():
    feats, pids, mods = clustered()
    fig = plot_tsne_pair({"baseline": feats, "method": feats[:, ::-1].copy()}, pids, mods)
    assert [ax.get_title() for ax in fig.axes] == ["baseline", "method"]
    own = plt.figure()
    assert plot_tsne(feats, pids, ax=own.add_subplot(1, 2, 2), title="inside") is own
    assert own.axes[0].get_title() == "inside" and own.axes[0].get_legend() is None
    plt.close(own)
    with pytest.raises(ValueError, match="one modality per sample"):
        plot_tsne(feats, pids, mods[:-1])
    with pytest.raises(ValueError, match="pids"):
        plot_tsne(feats, pids[:-1])


# ------------------------------------------------------------------------------------------------ distances


def test_distance_distributions_match_brute_force():
    feats, pids, mods = clustered(num_ids=3, per_id=4)
    got = distance_distributions(torch.from_numpy(feats), pids, mods)
    unit = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    expected = {key: [] for key in got}
    for i in range(len(pids)):
        for j in range(i + 1, len(pids)):
            d = float(((unit[i] - unit[j]) ** 2).sum())
            same_id, same_mod = pids[i] == pids[j], mods[i] == mods[j]
            expected["intra_identity" if same_id else "inter_identity"].append(d)
            expected["intra_modality" if same_mod else "inter_modality"].append(d)
            if not same_mod:
                expected["intra_identity_cross_modality" if same_id else "inter_identity_cross_modality"].append(d)
            elif same_id:
                expected["intra_identity_same_modality"].append(d)
    assert set(got) == set(expected)
    for key in got:
        np.testing.assert_allclose(got[key], expected[key], atol=1e-5)
    assert len(got["intra_identity"]) + len(got["inter_identity"]) == 12 * 11 // 2
    np.testing.assert_allclose(got["intra_identity"][0], pairwise_distance(feats[:1], feats[1:2])[0, 0], atol=1e-6)
    assert set(distance_distributions(feats, pids)) == {"intra_identity", "inter_identity"}


def test_separation_hand_cases():
    s = separation(np.array([0.1, 0.2]), np.array([0.3, 0.15]))
    assert s["auc"] == pytest.approx(0.75)
    assert s["intra_mean"] == pytest.approx(0.15) and s["gap"] == pytest.approx(0.075)
    assert separation([1.0], [1.0])["auc"] == 0.5 and separation([1.0], [1.0])["overlap"] == pytest.approx(1.0)
    assert separation([0.5], [3.0])["overlap"] == 0.0
    with pytest.raises(ValueError, match="at least one"):
        separation([], [1.0])


def test_plot_distance_distributions_panels_and_summary():
    feats, pids, mods = clustered()
    noisy = feats + np.random.default_rng(1).normal(size=feats.shape).astype(np.float32)
    fig = plot_distance_distributions({"baseline": noisy, "method": feats}, pids, mods,
                                      split="cross_modality")
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0].startswith("baseline\n") and "AUC" in titles[1]
    auc = separation(*(distance_distributions(feats, pids, mods)[k] for k in
                       ("intra_identity_cross_modality", "inter_identity_cross_modality")))["auc"]
    assert f"AUC {auc:.3f}" in titles[1]
    with pytest.raises(ValueError, match="needs the per-sample modalities"):
        plot_distance_distributions(feats, pids, split="modality")
    with pytest.raises(ValueError, match="unknown split"):
        plot_distance_distributions(feats, pids, split="camera")


def narrow_and_wide(num: int = 30):
    """Features whose distances lie in [0.1, 0.3], and spread-out ones.

    Narrow: u_i = cos(t_i) e_0 + sin(t_i) e_i (orthonormal e), so |u_i - u_j|^2 = 2 - 2 cos t_i cos t_j
    with cos t_i in [0.93, 0.97]: distances in [2 - 2 * 0.97^2, 2 - 2 * 0.93^2] = [0.118, 0.270].
    """
    cos = np.linspace(0.93, 0.97, num)
    narrow = np.zeros((num, num + 1))
    narrow[:, 0] = cos
    narrow[np.arange(num), np.arange(1, num + 1)] = np.sqrt(1 - cos ** 2)
    wide = np.random.default_rng(0).normal(size=(num, 8))
    return narrow.astype(np.float32), wide.astype(np.float32), np.repeat(np.arange(num // 5), 5)


def test_distance_bins_follow_each_panels_data():
    narrow, wide, pids = narrow_and_wide()
    pooled = np.concatenate(list(distance_distributions(narrow, pids).values()))
    low, high = pooled.min(), pooled.max()
    assert 0.1 <= low and high <= 0.3  # the case fixed bins on [0, 4] crushed into 4 bins
    fig = plot_distance_distributions({"collapsed": narrow, "spread": wide}, pids)
    for ax, feats in zip(fig.axes, (narrow, wide), strict=True):
        dists = np.concatenate(list(distance_distributions(feats, pids).values()))
        edges = sorted({round(p.get_x(), 12) for p in ax.patches})
        inside = [x for x in edges if dists.min() - 1e-9 <= x < dists.max()]
        assert len(inside) >= 20
        assert ax.get_xlim() == pytest.approx((dists.min(), dists.max()))
    shared = plot_distance_distributions({"collapsed": narrow, "spread": wide}, pids, shared_range=True)
    assert shared.axes[0].get_xlim() == shared.axes[1].get_xlim()
    np.testing.assert_allclose(distance_bins([0.1, 0.3]), np.linspace(0.1, 0.3, 61))


def test_separation_overlap_is_scale_free():
    rng = np.random.default_rng(0)
    intra, inter = rng.normal(1.0, 0.2, 200), rng.normal(1.5, 0.3, 300)
    # bins span the pooled data, so shrinking every distance (features collapsing) keeps the overlap
    assert separation(intra, inter)["overlap"] == separation(intra / 16, inter / 16)["overlap"]
    assert 0 < separation(intra, inter)["overlap"] < 1


# ------------------------------------------------------------------------------------------------ rank lists


DISTMAT = np.array([[0.5, 0.1, 0.1, 0.9, 0.3],
                    [0.2, 0.8, 0.4, 0.1, 0.6]])
Q_PIDS, G_PIDS = np.array([1, 2]), np.array([1, 1, 2, 2, 1])


def test_rank_list_orders_by_distance_with_stable_ties():
    order, correct = rank_list(DISTMAT, Q_PIDS, G_PIDS, k=3)
    assert order.tolist() == [[1, 2, 4], [3, 0, 2]]
    assert correct.tolist() == [[True, False, True], [True, False, True]]


def test_rank_list_keep_mask_and_errors():
    keep = np.ones_like(DISTMAT, dtype=bool)
    keep[0, 1] = keep[1, 3] = False
    order, correct = rank_list(DISTMAT, Q_PIDS, G_PIDS, k=2, keep_mask=keep)
    assert order.tolist() == [[2, 4], [0, 2]] and correct.tolist() == [[False, True], [False, True]]
    with pytest.raises(ValueError, match="only 4 gallery items"):
        rank_list(DISTMAT, Q_PIDS, G_PIDS, k=5, keep_mask=keep)
    with pytest.raises(ValueError, match="keep_mask"):
        rank_list(DISTMAT, Q_PIDS, G_PIDS, k=2, keep_mask=keep[:, :2])
    with pytest.raises(ValueError, match="query_pids"):
        rank_list(DISTMAT, G_PIDS, G_PIDS)


def test_protocol_keep_mask_removes_same_id_same_camera():
    keep = protocol_keep_mask("market", Q_PIDS, G_PIDS, [0, 0], [0, 1, 0, 1, 0])
    assert keep.tolist() == [[False, True, True, True, False], [True, True, False, True, True]]
    order, correct = rank_list(DISTMAT, Q_PIDS, G_PIDS, k=2, keep_mask=keep)
    assert order.tolist() == [[1, 2], [3, 0]] and correct.tolist() == [[True, False], [True, False]]
    # the first true match sits where the evaluation under the same protocol finds it
    result = evaluate_distmat(DISTMAT, Q_PIDS, G_PIDS, [0, 0], [0, 1, 0, 1, 0], "market")
    assert result.first_hit.tolist() == [0, 0]


def test_plot_rank_list_borders_captions_and_determinism(tmp_path):
    gallery = torch.rand(5, 3, 8, 4)
    queries = [np.full((8, 4, 3), 128, np.uint8), np.zeros((8, 4, 3), np.float32)]
    fig = plot_rank_list(queries, gallery, DISTMAT, Q_PIDS, G_PIDS, [1, 0], k=3)
    axes = np.array(fig.axes).reshape(2, 4)
    colours = [[axes[r, c].spines["left"].get_edgecolor() for c in range(1, 4)] for r in range(2)]
    ok, bad = to_rgba(CORRECT_COLOR), to_rgba(INCORRECT_COLOR)
    assert colours == [[ok, bad, ok], [ok, bad, ok]]
    assert axes[0, 1].get_xlabel() == "id 2\nd=0.100" and axes[0, 2].get_title() == "#2"
    assert axes[1, 0].get_xlabel() == "id 1"
    again = plot_rank_list(queries, gallery, DISTMAT, Q_PIDS, G_PIDS, [1, 0], k=3)
    assert png_bytes(fig, tmp_path / "1.png") == png_bytes(again, tmp_path / "2.png")
    with pytest.raises(ValueError, match="denormalize"):
        plot_rank_list(queries, gallery * 5 - 2, DISTMAT, Q_PIDS, G_PIDS, [0], k=2)


# ------------------------------------------------------------------------------------------------ image grids


def cell_aspects(fig) -> np.ndarray:
    """Width / height (inches) of the space the layout gives each axes (before imshow's aspect shrink)."""
    fig.get_layout_engine().execute(fig)
    width, height = fig.get_size_inches()
    boxes = [ax.get_position(original=True) for ax in fig.axes]
    return np.array([(b.width * width) / (b.height * height) for b in boxes])


def sample_records(tmp_path, shape=(24, 48)):
    """Four records (ids 1, 1, 2, 3; record 3 lacks TIR) with PNGs of ``shape`` and their sidecar rows."""
    rows, records = [], []
    plans = [("none", "none", "none"), ("flare", "none", "none"), ("none", "blur", "none"), ("flare", "none", None)]
    for i, (pid, plan) in enumerate(zip([1, 1, 2, 3], plans, strict=True)):
        images = {}
        for m, degradation in zip(MODS, plan, strict=True):
            if degradation is not None:
                path = tmp_path / f"{m}_{i}.png"
                Image.fromarray(np.full((*shape, 3), 40 * i, np.uint8)).save(path)
                images[m] = ImageRef(path)
        key = f"rgb_{i}.png"
        records.append(Record(images, pid=pid, camid=i % 2 + 1, key=key))
        row = {"key": key}
        for m, degradation in zip(MODS, plan, strict=True):
            row[f"{m}_degradation"] = degradation if degradation is not None else np.nan
            row[f"{m}_quality"] = (1.0 if degradation == "none" else 0.4) if degradation is not None else np.nan
        rows.append(row)
    return records, pd.DataFrame(rows).set_index("key")


@pytest.mark.parametrize("shape", [(24, 48), (64, 32)])
def test_image_cells_follow_the_image_aspect(tmp_path, shape):
    aspect = shape[1] / shape[0]
    images = torch.rand(3, 3, *shape)
    maps = {m: np.random.default_rng(i).random((3, *shape)) for i, m in enumerate(MODS)}
    cam = plot_gradcam(images, maps, titles=["id 1 · R flare q=0.08", "id 2 · clean", "id 3 · clean"])
    records, metadata = sample_records(tmp_path, shape)
    samples = plot_samples(records, MODS, metadata=metadata)
    ranks = plot_rank_list(images, images, DISTMAT[:, :3], Q_PIDS, G_PIDS[:3], [0, 1], k=2)
    for fig in (cam, samples, ranks):
        np.testing.assert_allclose(cell_aspects(fig), aspect, rtol=0.03)


def test_plot_samples_names_identities_and_degradations(tmp_path):
    records, metadata = sample_records(tmp_path)
    axes = np.array(plot_samples(records, MODS, metadata=metadata).axes).reshape(4, 3)
    assert [ax.get_title() for ax in axes[0]] == ["RGB", "NIR", "TIR"] and axes[1, 0].get_title() == ""
    assert [axes[r, 0].get_ylabel() for r in range(4)] == ["id 1\ncam 1", "id 1\ncam 2", "id 2\ncam 1", "id 3\ncam 2"]
    assert [ax.get_xlabel() for ax in axes[1]] == ["flare · q=0.40", "clean · q=1.00", "clean · q=1.00"]
    assert axes[3, 2].get_xlabel() == "absent"
    assert axes[1, 0].spines["left"].get_edgecolor() == to_rgba(DEGRADED_COLOR)
    assert not axes[1, 1].spines["left"].get_visible()
    assert plot_samples(records[:1], MODS).axes[0].get_xlabel() == ""
    assert condition_label(records[2], metadata) == "id 2 · N blur q=0.40"
    assert condition_label(records[3], metadata) == "id 3 · R flare q=0.40"
    assert condition_label(records[3], metadata, ["nir"]) == "id 3 · clean"
    assert condition_label(records[0]) == "id 1"
    with pytest.raises(ValueError, match="rgb_0.png.*no row in the metadata"):
        plot_samples(records, MODS, metadata=metadata.drop(index="rgb_0.png"))


def test_pick_diverse_covers_degradations_with_distinct_identities(tmp_path):
    records, metadata = sample_records(tmp_path)
    # greedy: record 0 (3 new conditions, first), then id 2's blur or id 3's flare: both add 1, id 2 first
    assert pick_diverse(records, metadata, 2) == [0, 2]
    assert pick_diverse(records, metadata, 3) == [0, 2, 3]
    # RGB only: record 0 (clean), then the first flare of a new identity (id 1 is shown): record 3
    assert pick_diverse(records, metadata, 2, modality="rgb") == [0, 3]
    assert pick_diverse(records, None, 3) == [0, 2, 3]  # real data: the first record of each identity
    assert len({records[i].pid for i in pick_diverse(records, metadata, 3)}) == 3
    assert pick_diverse(records, metadata, 4) == [0, 2, 3]  # only 3 identities: all of them
    with pytest.raises(ValueError, match="unknown modality"):
        pick_diverse(records, metadata, 2, modality="depth")
    with pytest.raises(ValueError, match="no row in the metadata"):
        pick_diverse(records, metadata.iloc[1:], 2)


# ------------------------------------------------------------------------------------------------ curves


def test_plot_cmc_draws_percent_curves(tmp_path):
    result = evaluate_distmat(DISTMAT, Q_PIDS, G_PIDS, [0, 0], [1, 1, 1, 1, 1], "market", max_rank=20)
    cmc = np.linspace(0.5, 1.0, 25)
    fig = plot_cmc({"method": result, "array": cmc}, max_rank=10)
    lines = fig.axes[0].get_lines()
    np.testing.assert_allclose(lines[0].get_ydata(), 100 * result.cmc[:10])
    np.testing.assert_allclose(lines[1].get_xdata(), np.arange(1, 11))
    assert "R-1 50.0%" in lines[1].get_label()
    assert png_bytes(fig, tmp_path / "1.png") == png_bytes(plot_cmc({"method": result, "array": cmc}, max_rank=10),
                                                           tmp_path / "2.png")
    with pytest.raises(ValueError, match="fractions"):
        plot_cmc({"percent": 100 * cmc})
    with pytest.raises(ValueError, match="max_rank=30"):
        plot_cmc({"short": cmc}, max_rank=30)


def test_sweep_stats_mean_std_and_order():
    stats = sweep_stats({0.5: [70.0, 72.0], 0.1: [60.0], 1.0: [65.0, 66.0, 67.0]}, "lambda")
    assert stats.index.tolist() == [0.1, 0.5, 1.0]
    np.testing.assert_allclose(stats["mean"], [60.0, 71.0, 66.0])
    np.testing.assert_allclose(stats["std"], [0.0, np.sqrt(2.0), 1.0])
    frame = pd.DataFrame({"k": ["b", "a", "b", "a"], "seed": [0, 0, 1, 1], "mAP": [1.0, 2.0, 3.0, 4.0]})
    by_frame = sweep_stats(frame, "k")
    assert by_frame.index.tolist() == ["b", "a"] and by_frame["mean"].tolist() == [2.0, 3.0]
    with pytest.raises(ValueError, match="lacks column"):
        sweep_stats(frame, "k", metric="R-1")


def test_plot_sweep_band_seeds_and_determinism(tmp_path):
    data = {4: [60.0, 62.0], 8: [65.0, 67.0, 66.0], 16: [63.0, 63.0]}
    fig = plot_sweep(data, "K", logx=True)
    ax = fig.axes[0]
    (mean_line,) = ax.get_lines()
    np.testing.assert_allclose(mean_line.get_ydata(), [61.0, 66.0, 63.0])
    assert mean_line.get_label() == "mAP: mean ± std, 2–3 seeds"
    band = next(c for c in ax.collections if isinstance(c, PolyCollection)).get_paths()[0].vertices
    assert band[:, 1].max() == pytest.approx(66.0 + 1.0) and band[:, 1].min() == pytest.approx(61.0 - np.sqrt(2.0))
    dots = next(c for c in ax.collections if isinstance(c, PathCollection)).get_offsets()
    assert sorted(map(tuple, np.asarray(dots))) == sorted((k, v) for k, vs in data.items() for v in vs)
    assert "seed" not in ax.get_title()
    assert png_bytes(fig, tmp_path / "1.png") == png_bytes(plot_sweep(data, "K", logx=True), tmp_path / "2.png")
    categorical = plot_sweep({"none": [1.0, 2.0], "mean": [2.0, 3.0]}, "pool").axes[0]
    assert [t.get_text() for t in categorical.get_xticklabels()] == ["none", "mean"]


def test_plot_sweep_single_seed_draws_no_band_and_says_so():
    ax = plot_sweep({0.0: [22.2], 1.0: [20.5], 3.0: [21.3]}, "rho").axes[0]
    assert len(ax.collections) == 0  # no band, no dots: one run per value
    assert ax.get_lines()[0].get_label() == "mAP: 1 seed, no spread measured"
    assert "1 seed" in ax.get_title() and "noise" in ax.get_title()


def test_plot_sweep_reference_never_sets_our_axis_limits():
    ours = {0.1: [16.9, 17.4], 0.5: [17.0, 17.6], 0.9: [16.4, 16.0]}
    plain = plot_sweep(ours, "γ").axes[0].get_ylim()
    quoted = plot_sweep(ours, "γ", reference={0.5: 71.2}, reference_label="paper (real data)")
    assert len(quoted.axes) == 1 and quoted.axes[0].get_ylim() == plain
    assert "paper (real data): 71.2 at γ = 0.5" in quoted.axes[0].get_title()
    assert all(71.2 not in line.get_ydata() for line in quoted.axes[0].get_lines())
    curve = {0.1: 69.0, 0.5: 71.2, 0.9: 70.1}
    twin = plot_sweep(ours, "γ", reference=curve, reference_label="paper (real data)")
    primary, secondary = twin.axes
    assert primary.get_ylim() == plain and plain[1] < 69.0
    np.testing.assert_allclose(secondary.get_lines()[0].get_ydata(), list(curve.values()))
    assert secondary.get_ylim()[0] < 69.0 < 71.2 < secondary.get_ylim()[1]
    assert "paper (real data)" in secondary.get_ylabel()
    line = plot_sweep(ours, "γ", reference=71.2, reference_axis="twin").axes
    assert line[0].get_ylim() == plain and line[1].get_lines()[0].get_ydata()[0] == 71.2
    with pytest.raises(ValueError, match="baseline"):
        plot_sweep(ours, "γ", reference=curve, reference_axis="shared")
    with pytest.raises(ValueError, match="absent from the sweep"):
        plot_sweep({"none": [1.0]}, "pool", reference={"max": 2.0})


def test_plot_sweep_baseline_shares_our_axis_with_its_own_band():
    frame = pd.DataFrame({"η": [0.0, 0.0, 0.2, 0.2], "seed": [0, 1, 0, 1], "mAP": [44.0, 46.0, 22.0, 23.0]})
    base = {0.0: [45.0, 44.0], 0.2: [20.0, 21.0]}
    fig = plot_sweep(frame, "η", baseline=base, baseline_label="baseline (zero-fill)")
    assert len(fig.axes) == 1
    ours, baseline = fig.axes[0].get_lines()
    np.testing.assert_allclose(ours.get_ydata(), [45.0, 22.5])
    np.testing.assert_allclose(baseline.get_ydata(), [44.5, 20.5])
    assert ours.get_label().startswith("ours:") and baseline.get_label().startswith("baseline (zero-fill):")
    assert len([c for c in fig.axes[0].collections if isinstance(c, PolyCollection)]) == 2


# ------------------------------------------------------------------------------------------------ tables


RECORDS = pd.DataFrame({
    "row": ["baseline", "baseline", "+ module", "+ module", "single"],
    "seed": [0, 1, 0, 1, 0],
    "mAP": [70.0, 72.0, 75.0, 75.02, 65.0],
    "R-1": [80.0, 81.0, np.nan, np.nan, 70.0],
    "note": ["a", "b", "c", "d", "e"],
})


def test_ablation_table_formats_mean_std():
    table = ablation_table(RECORDS)
    assert table.index.tolist() == ["baseline", "+ module", "single"]
    assert table.columns.tolist() == ["mAP", "R-1"]
    assert table.loc["baseline"].tolist() == ["71.0 ± 1.4", "80.5 ± 0.7"]
    assert table.loc["+ module"].tolist() == ["75.0 ± 0.0", "—"]
    assert table.loc["single"].tolist() == ["65.0", "70.0"]
    assert ablation_table(RECORDS, metrics=["R-1"], decimals=2).loc["baseline", "R-1"] == "80.50 ± 0.71"


def test_mean_std_frame_is_numeric():
    stats = mean_std_frame(RECORDS, metrics=["mAP"])
    assert stats.columns.tolist() == [("mAP", "mean"), ("mAP", "std"), ("mAP", "n")]
    assert stats.loc["baseline", ("mAP", "mean")] == 71.0 and stats.loc["single", ("mAP", "n")] == 1
    assert np.isnan(stats.loc["single", ("mAP", "std")])


def test_ablation_table_errors():
    with pytest.raises(ValueError, match="more than once"):
        ablation_table(pd.concat([RECORDS, RECORDS.iloc[:1]]))
    with pytest.raises(ValueError, match="lack column"):
        ablation_table(RECORDS, row="method")
    with pytest.raises(ValueError, match="non-numeric"):
        ablation_table(RECORDS, metrics=["note"])


def test_to_markdown_without_tabulate():
    table = ablation_table(RECORDS, metrics=["mAP"])
    table.index.name = "setting"
    assert to_markdown(table) == ("| setting | mAP |\n|---|---:|\n| baseline | 71.0 ± 1.4 |\n"
                                  "| + module | 75.0 ± 0.0 |\n| single | 65.0 |\n")
    numeric = pd.DataFrame({"a|b": [1.234, np.nan], "n": [1, 2]}, index=["x", "y"])
    assert to_markdown(numeric, floatfmt=".1f") == "|  | a\\|b | n |\n|---|---:|---:|\n| x | 1.2 | 1 |\n| y | — | 2 |\n"
    assert to_markdown(mean_std_frame(RECORDS, metrics=["mAP"]), index=False).splitlines()[0] == (
        "| mAP mean | mAP std | mAP n |")


def test_to_markdown_uses_one_numeric_format_per_table():
    # a claims table built row-wise (object columns) mixing magnitudes, as .4g printed "2 | 1.593 | 0.1805"
    claims = pd.DataFrame({"PG helps": {"paper": 2.0, "ours": 1.593, "se": 1.069, "same sign": True},
                           "CEM helps": {"paper": 2.8, "ours": 0.1805, "se": 0.7243, "same sign": True}}).T
    lines = to_markdown(claims).splitlines()
    assert lines[1] == "|---|---:|---:|---:|---|"
    assert lines[2:] == ["| PG helps | 2.00 | 1.59 | 1.07 | True |", "| CEM helps | 2.80 | 0.18 | 0.72 | True |"]
    cells = [c.strip() for line in to_markdown(claims, floatfmt=".1f").splitlines()[2:] for c in line.split("|")[2:5]]
    assert {len(c.split(".")[1]) for c in cells} == {1}
    table = ablation_table(RECORDS, decimals=2)
    numbers = [n for cell in table.to_numpy().ravel() if cell != "—" for n in cell.split(" ± ")]
    assert {len(n.split(".")[1]) for n in numbers} == {2}


# ------------------------------------------------------------------------------------------------ Grad-CAM


def test_vit_reshape_transform_drops_prefix_tokens():
    tokens = torch.arange(8.0).view(1, 8, 1)  # 2 prefix tokens, then a 2 x 3 grid
    out = vit_reshape_transform(2, (2, 3))(tokens)
    assert out.shape == (1, 1, 2, 3) and out[0, 0].tolist() == [[2.0, 3.0, 4.0], [5.0, 6.0, 7.0]]
    wide = torch.randn(2, 1 + 8, 5)
    torch.testing.assert_close(vit_reshape_transform(1, (4, 2))(wide)[:, :, 3, 1], wide[:, 8])
    with pytest.raises(ValueError, match="expected tokens"):
        vit_reshape_transform(1, (4, 2))(torch.randn(2, 8, 5))


class TinyReID(nn.Module):
    """Contract-compliant multi-modal model: one (or a shared) timm backbone per modality, linear heads."""

    modalities = MODS
    default_feature = "fused"

    def __init__(self, kind: str, shared: bool = False, mix: bool = False, num_classes: int = 5) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.kind, self.mix = kind, mix
        count = 1 if shared else len(self.modalities)
        self.backbones = nn.ModuleList(self._backbone() for _ in range(count))
        self.heads = nn.ModuleDict({m: nn.Linear(self.dim, num_classes) for m in self.modalities})
        first = self.backbones[0]
        self.cam_reshape = (vit_reshape_transform(first.num_prefix_tokens, first.patch_embed.grid_size)
                            if kind == "vit" else None)

    def _backbone(self) -> nn.Module:
        if self.kind == "vit":
            self.dim = 32
            return timm.create_model("vit_tiny_patch16_224", img_size=(32, 16), patch_size=8, depth=2,
                                     embed_dim=32, num_heads=2, num_classes=0)
        self.dim = 64
        return timm.create_model("resnet18", layers=(1, 1, 1, 1), channels=(8, 16, 32, 64), stem_width=8,
                                 output_stride=8, num_classes=0)

    def backbone(self, modality: str) -> nn.Module:
        return self.backbones[self.modalities.index(modality) % len(self.backbones)]

    def cam_target_layers(self, modality: str) -> list[nn.Module]:
        net = self.backbone(modality)
        return [net.blocks[-1].norm1] if self.kind == "vit" else [net.layer4]

    def forward(self, batch):
        feats = {}
        for m, name in enumerate(self.modalities):
            # mix: every modality's input also sees the others (each backbone call depends on every input)
            x = batch["images"][:, m] + (0.5 * batch["images"].mean(1) if self.mix else 0)
            out = self.backbone(name).forward_features(x)
            feats[name] = out[:, 0] if self.kind == "vit" else out.mean((2, 3))
        feats["fused"] = torch.cat([feats[m] for m in self.modalities], 1)
        logits = {m: self.heads[m](feats[m]) for m in self.modalities}
        return {"features": feats, "embeddings": feats, "logits": logits}


def cam_batch(seed: int = 0, size: int = 3):
    generator = torch.Generator().manual_seed(seed)
    return {"images": torch.randn(size, 3, 3, 32, 16, generator=generator), "present": torch.ones(size, 3, dtype=bool),
            "label": torch.arange(size)}


def reference_gradcam(model: TinyReID, batch, modality: str, classes: list[int]) -> np.ndarray:
    """Grad-CAM by hand: the modality's own target-layer call, d logit / d activation, channel weights."""
    m = model.modalities.index(modality)
    layer = model.cam_target_layers(modality)[0]
    seen = []
    handle = layer.register_forward_hook(lambda mod, i, o: seen.append(o))
    model.eval()
    try:
        logits = model(batch)["logits"][modality]
    finally:
        handle.remove()
    activation = seen[m % len(seen)] if len(seen) > 1 else seen[0]
    score = logits[torch.arange(len(classes)), torch.tensor(classes)].sum()
    grad = torch.autograd.grad(score, activation)[0]
    if model.cam_reshape is not None:
        activation, grad = model.cam_reshape(activation), model.cam_reshape(grad)
    cam = torch.relu((grad.mean((2, 3), keepdim=True) * activation).sum(1)).detach().numpy()
    return scale_cam_image(scale_cam_image(cam, (16, 32)))


@pytest.mark.parametrize("kind,shared,mix", [("vit", False, False), ("cnn", False, False), ("vit", True, False),
                                             ("vit", True, True)])
def test_gradcam_maps_match_manual_gradcam(kind, shared, mix):
    model = TinyReID(kind, shared=shared, mix=mix).train()
    batch = cam_batch()
    classes = [0, 2, 4]
    targets = [IdentityLogitTarget(c, "nir") for c in classes]
    maps = gradcam_maps(model, batch, "nir", targets)
    assert maps.shape == (3, 32, 16) and maps.dtype == np.float32
    assert maps.min() >= 0 and maps.max() <= 1 and (maps.max(axis=(1, 2)) > 0.99).all()
    assert model.training and all(p.grad is None for p in model.parameters())
    np.testing.assert_allclose(maps, reference_gradcam(model, batch, "nir", classes), atol=1e-4)
    np.testing.assert_array_equal(maps, gradcam_maps(model, batch, "nir", targets))
    other = gradcam_maps(model, batch, "tir", IdentityLogitTarget(0, "tir"))
    np.testing.assert_allclose(other, reference_gradcam(model, batch, "tir", [0, 0, 0]), atol=1e-4)


def test_identity_target_reads_the_named_logit():
    outputs = {"logits": {"rgb": torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])}}
    target = IdentityLogitTarget(2, "rgb")
    selected = target.select(outputs)
    assert [float(target(row)) for row in selected] == [3.0, 6.0]
    with pytest.raises(KeyError, match="logits\\['tir'\\]"):
        IdentityLogitTarget(0, "tir").select(outputs)


def test_embedding_similarity_target_and_adapter():
    model = TinyReID("cnn").eval()
    batch = cam_batch()
    with torch.no_grad():
        embeddings = model(batch)["embeddings"]["rgb"]
    target = EmbeddingSimilarityTarget(embeddings[0], "rgb")
    adapter = ModalityInput(model, batch, "rgb", select=target.select)
    with torch.no_grad():
        selected = adapter(batch["images"][:, 0])
        swapped = adapter(batch["images"][:, 1])
    assert float(target(selected[0])) == pytest.approx(1.0, abs=1e-5)
    assert float(target(selected[1])) < 0.9999
    assert not torch.allclose(swapped, selected)  # the adapter's input replaces the rgb images
    maps = gradcam_maps(model, batch, "rgb", target, method="gradcam++")
    assert maps.shape == (3, 32, 16) and 0 <= maps.min() and maps.max() <= 1
    with pytest.raises(ValueError, match="dimension 64"):
        EmbeddingSimilarityTarget(torch.ones(3), "rgb").select(model(batch))
    with pytest.raises(ValueError, match="not among the model's modalities"):
        ModalityInput(model, batch, "depth")
    with pytest.raises(ValueError, match="unknown CAM method"):
        gradcam_maps(model, batch, "rgb", target, method="scorecam")
    with pytest.raises(ValueError, match="2 targets for a batch of 3"):
        gradcam_maps(model, batch, "rgb", [target, target])


def test_plot_gradcam_grid(tmp_path):
    images = denormalize(cam_batch()["images"])
    maps = {m: np.random.default_rng(i).random((3, 32, 16)).astype(np.float32) for i, m in enumerate(MODS)}
    fig = plot_gradcam({m: images[:, i] for i, m in enumerate(MODS)}, maps, titles=["a", "b", "c"])
    assert len(fig.axes) == 3 * 6
    assert fig.axes[0].get_title() == "rgb" and fig.axes[1].get_title() == "rgb CAM" and fig.axes[6].get_ylabel() == "b"
    again = plot_gradcam({m: images[:, i] for i, m in enumerate(MODS)}, maps, titles=["a", "b", "c"])
    assert png_bytes(fig, tmp_path / "1.png") == png_bytes(again, tmp_path / "2.png")
    single = plot_gradcam(images[:, 0], maps["rgb"], show_input=False)
    assert len(single.axes) == 3
    with pytest.raises(ValueError, match="does not match"):
        plot_gradcam(images[:, 0], maps["rgb"][:, :16])
    with pytest.raises(ValueError, match="lack the column"):
        plot_gradcam({"rgb": images[:, 0]}, maps)
    with pytest.raises(ValueError, match="one map per row"):
        plot_gradcam(images[:, 0], {"a": maps["rgb"], "b": maps["nir"][:2]})
