"""The paper's analyses as tools (Zeiler & Fergus Fig. 2, 4-7, Table 1, Sec. 5.2), built on the
engine: each writes PNGs, machine-readable JSON/CSV and a static, offline ``index.html``.

Modules (each also a CLI verb, registered in :mod:`pydeconv.analysis.commands`):

- :mod:`~pydeconv.analysis.imageset` -- image sets: folders, globs, list files, class folders
- :mod:`~pydeconv.analysis.reportdir` -- a report folder written as a whole or not at all

NumPy and Pillow only at import time; scikit-learn, matplotlib, scikit-image
(``pydeconv[analysis]``) and Dask (``pydeconv[dask]``) are imported where they are used
(:mod:`pydeconv.analysis.extras`).
"""
