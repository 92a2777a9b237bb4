"""Feature analysis of paper Figure 3: proxy A-distance between domains and t-SNE embeddings."""

from .a_distance import C_SCALES, INNER_FOLDS, proxy_a_distance
from .figures import TSNE_PCA_DIMS, plot_a_distances, plot_tsne

__all__ = ["C_SCALES", "INNER_FOLDS", "TSNE_PCA_DIMS", "plot_a_distances", "plot_tsne", "proxy_a_distance"]
