"""The paper's analyses as tools (Zeiler & Fergus Fig. 2, 4-7, Table 1, Sec. 5.2), built on the
engine: each writes PNGs, machine-readable JSON/CSV and a static, offline ``index.html``.

Modules (each also a CLI verb, registered in :mod:`pydeconv.analysis.commands`):

- :mod:`~pydeconv.analysis.atlas` -- the feature atlas (Fig. 2): each channel's top-k tiles
- :mod:`~pydeconv.analysis.mine` -- mining the atlas's top-k: resumable state files that merge
- :mod:`~pydeconv.analysis.dask_shards` -- the mining spread over a Dask cluster
- :mod:`~pydeconv.analysis.specialise` -- selectivity, entropy and diversity of each channel
- :mod:`~pydeconv.analysis.probe` -- the retrain-depth probe (Sec. 5.2): a linear probe per layer
- :mod:`~pydeconv.analysis.fashion_mnist` -- Debian's Fashion-MNIST as class folders
- :mod:`~pydeconv.analysis.occlusion` -- occlusion maps (Fig. 7)
- :mod:`~pydeconv.analysis.invariance` -- translation, scale and rotation sweeps (Fig. 5)
- :mod:`~pydeconv.analysis.correspondence` -- the same part occluded across images (Table 1)
- :mod:`~pydeconv.analysis.filters` -- filters as a grid and filter statistics (Fig. 6)
- :mod:`~pydeconv.analysis.evolution` -- features over training checkpoints (Fig. 4)
- :mod:`~pydeconv.analysis.relevance` -- activation times gradient: units a class uses
- :mod:`~pydeconv.analysis.sanity` -- cascading weight randomisation (Adebayo et al. 2018)

Shared parts: :mod:`~pydeconv.analysis.imageset` (image sets: folders, globs, list files, class
folders), :mod:`~pydeconv.analysis.reportdir` (a report folder written as a whole or not at all),
:mod:`~pydeconv.analysis.outputs` (class probabilities, fills, batch sizes within memory),
:mod:`~pydeconv.analysis.heatmap` (pictures of numbers), :mod:`~pydeconv.analysis.extras` (the
optional libraries) and :mod:`~pydeconv.analysis.commands` (the CLI verbs).

NumPy and Pillow only at import time; scikit-learn, matplotlib, scikit-image
(``pydeconv[analysis]``) and Dask (``pydeconv[dask]``) are imported where they are used
(:mod:`pydeconv.analysis.extras`).
"""
