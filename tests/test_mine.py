"""Atlas mining (pydeconv.analysis.mine): the top-k per channel against a brute-force
reimplementation over all activations, the state file, merge, resume and Dask."""

from __future__ import annotations

import functools
import itertools

import models
import numpy as np
import pytest
from PIL import Image

import pydeconv
from pydeconv.analysis import mine
from pydeconv.errors import PydeconvError

LAYERS = ["conv1_2", "pool1", "conv2_3"]
K = 4
BATCH = 4
N_IMAGES = 30


def make_images(folder, n=N_IMAGES, seed=0):
    """n seeded PNGs; with ties on purpose: two copies of one picture (same values, different
    ids) and two flat pictures (whole maps of one value: the first position must win)."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        if i in (7, 19):
            pixels = np.full((20, 20, 3), 128 if i == 7 else 0, dtype=np.uint8)
        elif i == 23:
            pixels = np.asarray(Image.open(paths[11]))
        else:
            pixels = rng.integers(0, 256, (22 + i % 5, 20 + i % 3, 3), dtype=np.uint8)
        path = folder / f"im{i:02d}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mine")
    graph, params = models.vgg_like(seed=3, size=20)
    model = folder / "vgg_like.npz"
    pydeconv.build(graph, params).save(model)
    (folder / "images").mkdir()
    images = make_images(folder / "images")
    return pydeconv.load(model), model, images


def brute_force(net, images, layers, k, batch, weight=None):
    """Every activation of every image (forwarded in the same batches as mining: the engine's
    last bits depend on the batch), then per channel: each image's first strongest position in
    row-major order by a plain scan, all entries sorted by (value desc, id asc, position asc)."""
    acts = {layer: [] for layer in layers}
    for s in range(0, len(images), batch):
        x = np.stack([pydeconv.image.load(p, net)[0] for p in images[s : s + batch]])
        _, trace = net.forward(x, keep="all")
        for layer in layers:
            a = np.array(trace.activation(layer), dtype=np.float32)
            if weight is not None:
                a = a * weight[layer][None, :, None, None]
            acts[layer].append(a)
    out = {}
    for layer in layers:
        a = np.concatenate(acts[layer])
        n, c, h, w = a.shape
        table = []
        for ch in range(c):
            entries = []
            for i in range(n):
                best, where = None, None
                for p, v in enumerate(a[i, ch].ravel().tolist()):
                    if best is None or v > best:
                        best, where = v, p
                entries.append((-best, i, where))
            entries.sort()
            table.append([(-v, i, p) for v, i, p in entries[:k]])
        out[layer] = table
    return out


def as_table(st, layer):
    return [
        [(float(v), int(i), int(p)) for v, i, p in zip(vr, ir, pr) if i >= 0]
        for vr, ir, pr in zip(st.values[layer], st.ids[layer], st.pos[layer])
    ]


def test_topk_equals_brute_force(setup):
    net, _, images = setup
    st = mine.mine(net, images, LAYERS, k=K, batch_size=BATCH, threads=1)
    want = brute_force(net, images, LAYERS, K, BATCH)
    assert st.finished == len(images) and not st.skipped
    for layer in LAYERS:
        assert as_table(st, layer) == want[layer]
    # The tie cases were really exercised: the flat image 19 (all zeros in, so one value over a
    # map) and the copies 11/23 (equal values, the smaller id first).
    units = st.units("conv1_2")
    pairs = [(u[0]["image"], u[1]["image"]) for u in units if len(u) > 1]
    assert any(p == (11, 23) for p in pairs)


def test_custom_score_ranks_and_positions(setup):
    """A per-unit score function (here a fixed per-channel weighting with signs, so that the
    best position is the activation's minimum for negative channels) is what is ranked."""
    net, _, images = setup
    rng = np.random.default_rng(5)
    weight = {}
    for layer in LAYERS:
        c = net.layer_info(layer)["shape"][0]
        weight[layer] = rng.choice([-1.5, -0.5, 0.5, 2.0], c).astype(np.float32)

    def score(net, trace, layer, act):
        return act * weight[layer][None, :, None, None]

    st = mine.mine(
        net, images, LAYERS, k=K, batch_size=BATCH, score=score, ranking="relevance", class_=2
    )
    want = brute_force(net, images, LAYERS, K, BATCH, weight)
    for layer in LAYERS:
        assert as_table(st, layer) == want[layer]
    assert st.header()["ranking"] == "relevance" and st.header()["class"] == 2


@pytest.fixture(scope="module")
def whole(setup):
    net, _, images = setup
    return mine.mine(net, images, LAYERS, k=K, batch_size=BATCH)


def test_merge_of_shards_equals_the_whole(setup, whole):
    net, _, images = setup
    shards = mine.shard_batches(len(images), BATCH, 3)
    assert sorted(itertools.chain(*shards)) == list(range(len(images)))
    parts = [mine.mine(net, images, LAYERS, k=K, batch_size=BATCH, ids=s) for s in shards]
    for p in parts:
        assert 0 < p.finished < len(images)
    a, b, c = parts
    assert mine.merge(mine.merge(a, b), c).equal(whole)
    assert mine.merge(a, mine.merge(b, c)).equal(whole)  # associative
    for perm in itertools.permutations(parts):  # commutative
        assert functools.reduce(mine.merge, perm).equal(whole)
    assert mine.merge(whole, a).equal(whole)  # overlapping states: each image counted once
    assert not a.equal(whole)


def test_merge_refuses_states_that_do_not_belong_together(setup, whole):
    net, _, images = setup
    other_k = mine.MineState.empty(net, images, LAYERS, k=K + 1, batch_size=BATCH)
    other_layers = mine.MineState.empty(net, images, LAYERS[:2], k=K, batch_size=BATCH)
    other_model = mine.MineState.empty(
        pydeconv.build(*models.vgg_like(seed=4, size=20)), images, LAYERS, K, batch_size=BATCH
    )
    for other, what in ((other_k, "k"), (other_layers, "layers"), (other_model, "model")):
        with pytest.raises(mine.StateError, match=f"differ in their {what}"):
            mine.merge(whole, other)


def test_state_file_round_trip_and_damage(setup, whole, tmp_path):
    path = tmp_path / "s.npz"
    whole.save(path)
    assert mine.MineState.load(path).equal(whole)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a state")
    with pytest.raises(mine.StateError, match="bad.npz: not a pydeconv atlas state"):
        mine.MineState.load(bad)
    with pytest.raises(mine.StateError, match="cannot read"):
        mine.MineState.load(tmp_path / "missing.npz")


def test_resume_after_interrupt_equals_uninterrupted(setup, whole, tmp_path):
    net, _, images = setup
    path = tmp_path / "state.npz"
    calls = {"n": 0}

    def interrupting(net, trace, layer, act):
        calls["n"] += 1
        if calls["n"] == 3 * len(LAYERS) + 2:  # in the middle of the 4th batch
            raise KeyboardInterrupt
        return act

    with pytest.raises(KeyboardInterrupt):
        mine.mine(
            net, images, LAYERS, k=K, batch_size=BATCH, score=interrupting, state_path=path,
            save_every=1000,
        )  # fmt: skip
    saved = mine.MineState.load(path)  # saved on the interrupt, not only every 1000 images
    assert saved.finished == 3 * BATCH
    assert list(np.flatnonzero(saved.done)) == list(range(3 * BATCH))
    resumed = mine.mine(net, saved, state_path=path)
    assert resumed.equal(whole)
    assert mine.MineState.load(path).equal(whole)
    with pytest.raises(mine.StateError, match="batches of 4"):
        mine.mine(net, saved, batch_size=8)


def test_saved_every_m_images(setup, tmp_path):
    net, _, images = setup
    path = tmp_path / "state.npz"
    seen = []

    def watch(done, final=False):
        if path.exists():
            seen.append(mine.MineState.load(path).finished)

    mine.mine(
        net, images[:16], LAYERS[:1], k=2, batch_size=4, state_path=path, save_every=8,
        progress=watch,
    )  # fmt: skip
    assert seen[:4] == [8, 8, 16, 16]


def test_unreadable_images_are_skipped_and_listed(setup, tmp_path):
    net, _, images = setup
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG but not really")
    paths = images[:5] + [bad] + images[5:10]
    st = mine.mine(net, paths, LAYERS[:1], k=3, batch_size=4)
    assert list(st.skipped) == [5] and "broken.png" in st.skipped[5]
    assert st.finished == 11
    assert all(u["image"] != 5 for ch in st.units(LAYERS[0]) for u in ch)


@pytest.mark.parametrize(
    "layers, k, match",
    [
        (["fc9"], 3, "unknown layer 'fc9'"),
        (["conv1_2"], 40, "k=40 is larger than the image count"),
        (["conv1_2"], 0, "k must be"),
        ([], 3, "at least one layer"),
    ],
)
def test_bad_input_one_clear_error(setup, layers, k, match):
    net, _, images = setup
    with pytest.raises(PydeconvError, match=match):
        mine.mine(net, images, layers, k=k)


def test_dense_layer_is_not_a_feature_map(tmp_path):
    net = pydeconv.build(*models.zfnet_like(size=37))
    with pytest.raises(PydeconvError, match="'fc6' is not a feature map"):
        mine.MineState.empty(net, ["a.png"], ["fc6"], k=1)


def test_all_unreadable_is_one_error(setup, tmp_path):
    net, _, _ = setup
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"b{i}.png")
        paths[-1].write_bytes(b"junk")
    st = mine.mine(net, paths, LAYERS[:1], k=2)
    with pytest.raises(PydeconvError, match="none of the 3 image"):
        mine.check_complete(st)


def test_dask_local_cluster_equals_single_process(setup, whole):
    distributed = pytest.importorskip("dask.distributed")
    from pydeconv.analysis import dask_shards

    net, model, images = setup
    st = mine.MineState.empty(net, images, LAYERS, k=K, batch_size=BATCH)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        got = dask_shards.mine_on_dask(client, str(model), st, n_shards=3, threads=1)
    assert got.equal(whole)
