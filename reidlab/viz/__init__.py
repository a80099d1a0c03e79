"""Analysis kit: t-SNE, Grad-CAM, distance distributions, CMC, rank lists, sweeps, sample grids, ablation tables."""

from reidlab.viz.curves import plot_cmc, plot_curves, plot_sweep, sweep_stats
from reidlab.viz.distances import distance_bins, distance_distributions, plot_distance_distributions, separation
from reidlab.viz.gradcam import (
    CAM_METHODS,
    EmbeddingSimilarityTarget,
    IdentityLogitTarget,
    ModalityInput,
    ViTReshape,
    gradcam_maps,
    overlay,
    plot_gradcam,
    vit_reshape_transform,
)
from reidlab.viz.leaderboard import plot_leaderboard, plot_rank_comparison
from reidlab.viz.retrieval import plot_rank_list, protocol_keep_mask, rank_list
from reidlab.viz.samples import condition_label, pick_diverse, plot_samples
from reidlab.viz.style import denormalize, save_figure, to_display
from reidlab.viz.tables import ablation_table, mean_std_frame, to_markdown
from reidlab.viz.tsne import plot_tsne, plot_tsne_pair, select_identities, tsne_embedding

__all__ = [
    "CAM_METHODS",
    "EmbeddingSimilarityTarget",
    "IdentityLogitTarget",
    "ModalityInput",
    "ViTReshape",
    "ablation_table",
    "condition_label",
    "denormalize",
    "distance_bins",
    "distance_distributions",
    "gradcam_maps",
    "mean_std_frame",
    "overlay",
    "pick_diverse",
    "plot_cmc",
    "plot_curves",
    "plot_distance_distributions",
    "plot_gradcam",
    "plot_leaderboard",
    "plot_rank_comparison",
    "plot_rank_list",
    "plot_samples",
    "plot_sweep",
    "plot_tsne",
    "plot_tsne_pair",
    "protocol_keep_mask",
    "rank_list",
    "save_figure",
    "select_identities",
    "separation",
    "sweep_stats",
    "to_display",
    "to_markdown",
    "tsne_embedding",
    "vit_reshape_transform",
]
