"""Training data: ImageFolderDataset (listing, checks, resizing, deterministic flips, workers) and
ResumableSampler (permutations, resume, distributed slices, batch size changes, DataLoader)."""

from __future__ import annotations

import logging
import pickle
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from hyperinverter.data import DatasetError, DatasetImageError, ImageFolderDataset, ResumableSampler
from hyperinverter.errors import HyperInverterError
from hyperinverter.utils.image_io import ImageLoadError, load_image

LOGGER = "hyperinverter"


def write_png(path: Path, w: int = 16, h: int = 16, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(arr).save(path)
    return path


def make_folder(root: Path, n: int = 10, sizes=((16, 16),)) -> list:
    return [write_png(root / f"img{i:02d}.png", *sizes[i % len(sizes)], seed=i) for i in range(n)]


def warnings_of(caplog) -> list:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name.startswith(LOGGER)]


# ---------------------------------------------------------------- ImageFolderDataset: listing and checks


def test_lists_recursively_sorted_and_ignores_other_files(tmp_path, caplog):
    write_png(tmp_path / "b.png", seed=1)
    write_png(tmp_path / "a.png", seed=2)
    Image.open(write_png(tmp_path / "tmp.png", seed=8)).save(tmp_path / "d.JPG")  # extensions in any case
    (tmp_path / "tmp.png").unlink()
    write_png(tmp_path / "sub" / "z.png", seed=3)
    write_png(tmp_path / "sub" / "deeper" / "c.png", seed=4)
    write_png(tmp_path / "a-b" / "x.png", seed=5)
    write_png(tmp_path / ".hidden" / "h.png", seed=6)
    write_png(tmp_path / ".h.png", seed=7)
    (tmp_path / "notes.txt").write_text("not an image")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        ds = ImageFolderDataset(tmp_path, 16)
    rel = [p.relative_to(tmp_path).as_posix() for p in ds.paths]
    assert rel == ["a-b/x.png", "a.png", "b.png", "d.JPG", "sub/deeper/c.png", "sub/z.png"]
    assert len(ds) == 6 and ds.skipped == []
    assert warnings_of(caplog) == []
    x = ds[0]
    assert x.dtype == torch.float32 and x.shape == (3, 16, 16)
    assert torch.equal(x, load_image(tmp_path / "a-b" / "x.png", 16)[0])
    assert torch.equal(ds[-1], ds[5])
    with pytest.raises(IndexError):
        ds[6]
    d = ds.describe()
    assert "6 images" in d and "16x16" in d and "0 unreadable" in d


def test_mixed_sizes_are_resized_with_one_warning(tmp_path, caplog):
    make_folder(tmp_path, 10, sizes=((16, 16), (20, 12), (24, 24)))  # 3 of 10 are 20x12
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        ds = ImageFolderDataset(tmp_path, 16)
    msgs = warnings_of(caplog)
    assert len(msgs) == 1
    assert "3 images are not square" in msgs[0] and "16x16" in msgs[0] and "aspect ratio" in msgs[0]
    assert ds.num_not_square == 3 and "3 not square" in ds.describe()
    for i in range(len(ds)):
        x = ds[i]
        assert x.shape == (3, 16, 16) and x.min() >= -1 and x.max() <= 1
    assert torch.equal(ds[1], load_image(ds.paths[1], 16)[0])  # the 20x12 one, through load_image's resize


def test_unreadable_files_skipped_with_one_summary_warning(tmp_path, caplog):
    good = make_folder(tmp_path, 3)
    bad = []
    for i in range(12):
        p = tmp_path / f"bad{i:02d}.png"
        p.write_bytes(b"this is not a png" if i % 2 else b"")
        bad.append(p)
    tiny = write_png(tmp_path / "tiny.png", 4, 4)  # below min_size
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        ds = ImageFolderDataset(tmp_path, 16)
    assert ds.paths == sorted(good)
    assert len(ds.skipped) == 13
    msgs = warnings_of(caplog)
    assert len(msgs) == 1
    msg = msgs[0]
    assert "skipped 13 unreadable" in msg and "and 3 more" in msg and str(tmp_path) in msg
    assert sum(str(p) in msg for p in bad + [tiny]) == 10  # names exactly 10 of them
    assert "13 unreadable skipped" in ds.describe()


def test_folder_errors(tmp_path):
    with pytest.raises(DatasetError, match="not found") as e:
        ImageFolderDataset(tmp_path / "missing", 16)
    assert str(tmp_path / "missing") in str(e.value)
    assert isinstance(e.value, HyperInverterError) and isinstance(e.value, ValueError)

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="no image files") as e:
        ImageFolderDataset(empty, 16)
    assert str(empty) in str(e.value)

    (empty / "readme.txt").write_text("x")
    with pytest.raises(DatasetError, match="no image files"):
        ImageFolderDataset(empty, 16)

    f = write_png(tmp_path / "single.png")
    with pytest.raises(DatasetError, match="not a folder"):
        ImageFolderDataset(f, 16)


def test_all_unreadable_is_an_error(tmp_path, caplog):
    for i in range(3):
        (tmp_path / f"x{i}.jpg").write_bytes(b"garbage")
    with caplog.at_level(logging.WARNING, logger=LOGGER), pytest.raises(DatasetError, match="none of the 3") as e:
        ImageFolderDataset(tmp_path, 16)
    assert str(tmp_path) in str(e.value)


def test_check_modes_and_truncated_file(tmp_path, caplog):
    make_folder(tmp_path, 4)
    data = (tmp_path / "img03.png").read_bytes()
    trunc = tmp_path / "img03.png"
    trunc.write_bytes(data[: len(data) // 2])  # header fine, pixel data truncated

    ds = ImageFolderDataset(tmp_path, 16, check="header")  # a header check does not see it
    assert len(ds) == 4
    with pytest.raises(ImageLoadError) as e:
        ds[3]
    assert isinstance(e.value, DatasetImageError) and e.value.path == trunc and str(trunc) in str(e.value)

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        full = ImageFolderDataset(tmp_path, 16, check="full")
    assert len(full) == 3 and full.skipped[0][0] == trunc
    assert len(warnings_of(caplog)) == 1

    none = ImageFolderDataset(tmp_path, 16, check="none")
    assert len(none) == 4 and none.num_not_square is None

    with pytest.raises(ValueError, match="check"):
        ImageFolderDataset(tmp_path, 16, check="quick")


def test_max_images_counts_readable_ones(tmp_path):
    make_folder(tmp_path, 5)
    (tmp_path / "img00.png").write_bytes(b"broken")
    ds = ImageFolderDataset(tmp_path, 16, max_images=3)
    assert [p.name for p in ds.paths] == ["img01.png", "img02.png", "img03.png"]


# ---------------------------------------------------------------- ImageFolderDataset: flips and workers


def test_hflip_deterministic_per_seed_epoch_index(tmp_path):
    make_folder(tmp_path, 10)
    a = ImageFolderDataset(tmp_path, 16, hflip=True, seed=3)
    b = ImageFolderDataset(tmp_path, 16, hflip=True, seed=3)
    plain = ImageFolderDataset(tmp_path, 16)
    torch.manual_seed(123)  # the global RNG plays no part
    xa = [a[i] for i in range(10)]
    torch.manual_seed(456)
    xb = [b[i] for i in range(10)]
    assert all(torch.equal(u, v) for u, v in zip(xa, xb))

    flips0 = [a.flipped(i, 0) for i in range(10)]
    assert 0 < sum(flips0) < 10
    for i in range(10):
        ref = plain[i]
        assert torch.equal(xa[i], ref.flip(-1) if flips0[i] else ref)
        assert not plain.flipped(i, 0)

    flips = [[a.flipped(i, e) for i in range(10)] for e in range(4)]
    assert len({tuple(f) for f in flips}) > 1  # epochs differ
    a.set_epoch(2)
    assert all(torch.equal(a[i], b[(i, 2)]) for i in range(10))
    assert [ImageFolderDataset(tmp_path, 16, hflip=True, seed=4).flipped(i, 0) for i in range(10)] != flips0


def test_dataset_is_picklable(tmp_path):
    make_folder(tmp_path, 3)
    ds = ImageFolderDataset(tmp_path, 16, hflip=True, seed=1)
    ds.set_epoch(5)
    ds2 = pickle.loads(pickle.dumps(ds))
    assert ds2.paths == ds.paths and ds2.epoch == 5
    assert torch.equal(ds2[1], ds[1])


def test_dataloader_workers_give_same_tensors(tmp_path):
    make_folder(tmp_path, 10, sizes=((16, 16), (20, 12)))
    ds = ImageFolderDataset(tmp_path, 16, hflip=True, seed=7)
    out = {}
    for workers in (0, 2):
        sampler = ResumableSampler(len(ds), 4, seed=1, yield_epoch=True)
        loader = DataLoader(ds, batch_sampler=sampler, num_workers=workers)
        out[workers] = list(islice(loader, 6))  # 2 batches per epoch: crosses two epoch boundaries
    assert all(torch.equal(u, v) for u, v in zip(out[0], out[2]))
    # and they are what direct indexing gives
    ref = ResumableSampler(len(ds), 4, seed=1, yield_epoch=True)
    for x, idx in zip(out[2], islice(iter(ref), 6)):
        assert torch.equal(x, torch.stack([ds[k] for k in idx]))


def test_unreadable_during_training_reaches_trainer_as_image_load_error(tmp_path):
    make_folder(tmp_path, 4)
    ds = ImageFolderDataset(tmp_path, 16)
    broken = ds.paths[2]
    broken.write_bytes(b"gone bad")
    for workers in (0, 2):
        loader = DataLoader(ds, batch_size=4, num_workers=workers)
        with pytest.raises(ImageLoadError) as e:
            next(iter(loader))
        err = e.value
        assert isinstance(err, DatasetImageError)
        assert err.path == broken and str(err).startswith(str(broken))
        if workers:
            assert "worker process" in str(err) and "Traceback" in err.worker_traceback


# ---------------------------------------------------------------- ResumableSampler


def take(it, k):
    return [list(b) for b in islice(it, k)]


def test_batches_cover_the_epoch_permutation():
    s = ResumableSampler(12, 3, seed=5)
    assert s.batches_per_epoch == 4
    batches = take(iter(s), 8)
    for e in range(2):
        flat = sum(batches[4 * e: 4 * e + 4], [])
        assert flat == torch.randperm(12, generator=torch.Generator().manual_seed(5 + e)).tolist()
    assert sorted(sum(batches[:4], [])) == list(range(12))
    assert sum(batches[:4], []) != sum(batches[4:], [])  # epochs differ

    s = ResumableSampler(10, 3, seed=0)  # drop_last: 3 batches, 1 index left out per epoch
    b = take(iter(s), 3)
    assert len(set(sum(b, []))) == 9 and all(len(x) == 3 for x in b)

    s = ResumableSampler(10, 3, seed=0, drop_last=False)
    assert [len(x) for x in take(iter(s), 5)] == [3, 3, 3, 1, 3]

    s = ResumableSampler(5, 2, shuffle=False)
    assert take(iter(s), 3) == [[0, 1], [2, 3], [0, 1]]


def test_iteration_does_not_move_the_state_and_advance_rolls_epochs():
    s = ResumableSampler(10, 3)
    take(iter(s), 7)
    assert (s.epoch, s.position) == (0, 0)
    s.advance(2)
    assert (s.epoch, s.position) == (0, 2)
    s.advance(2)  # 3 batches per epoch
    assert (s.epoch, s.position) == (1, 1)
    s.advance(7)
    assert (s.epoch, s.position) == (3, 2)


def test_resume_gives_identical_continuation():
    s = ResumableSampler(11, 2, seed=9)
    it = iter(s)
    for _ in range(7):  # crosses an epoch boundary (5 batches per epoch)
        next(it)
        s.advance()
    state = s.state_dict()
    assert set(state) >= {"epoch", "position", "seed", "batch_size"}
    assert (state["epoch"], state["position"]) == (1, 2)
    expected = take(it, 9)

    r = ResumableSampler(11, 2, seed=9)
    r.load_state_dict(pickle.loads(pickle.dumps(state)))
    assert take(iter(r), 9) == expected

    q = ResumableSampler(11, 2, seed=9)
    q.set_position(1, 2)
    assert take(iter(q), 9) == expected
    assert take(q.batches_from(1, 2), 9) == expected

    with pytest.raises(ValueError, match="seed"):
        ResumableSampler(11, 2, seed=8).load_state_dict(state)
    with pytest.raises(ValueError, match="dataset_len"):
        ResumableSampler(12, 2, seed=9).load_state_dict(state)
    with pytest.raises(ValueError, match="past the end"):
        q.set_position(0, 5)


def test_rank_slices_equal_single_process_with_doubled_batch():
    single = take(iter(ResumableSampler(23, 6, seed=2)), 10)
    ranks = [take(iter(ResumableSampler(23, 3, seed=2, rank=r, world_size=2)), 10) for r in range(2)]
    assert [a + b for a, b in zip(*ranks)] == single
    r0 = ResumableSampler(23, 3, seed=2, rank=0, world_size=2)
    assert r0.batches_per_epoch == 3 and r0.global_batch_size == 6
    with pytest.raises(ValueError, match="drop_last"):
        ResumableSampler(23, 3, world_size=2, drop_last=False)
    with pytest.raises(ValueError, match="rank"):
        ResumableSampler(23, 3, rank=2, world_size=2)
    with pytest.raises(ValueError, match="larger than the dataset"):
        ResumableSampler(5, 3, world_size=2)


def run_schedule(s, schedule, k_save=None):
    """Consume batches as a trainer does: ``schedule`` is a list of (batch_size, steps)."""
    seen, state = [], None
    step = 0
    for bs, steps in schedule:
        s.set_batch_size(bs)
        it = iter(s)  # re-create the iterator after a batch size change
        for _ in range(steps):
            seen.append(next(it))
            s.advance()
            step += 1
            if step == k_save:
                state = s.state_dict()
    return seen, state


def test_batch_size_change_keeps_the_stream_exact_and_resumes():
    n = 20
    s = ResumableSampler(n, 4, seed=3)
    seen, state = run_schedule(s, [(4, 2), (3, 5), (5, 6)], k_save=4)
    # epoch 0: 2x4 = 8 samples, then batches of 3 from sample 8: 12 samples -> 4 batches, epoch ends at 20
    perm0 = torch.randperm(n, generator=torch.Generator().manual_seed(3)).tolist()
    assert sum(seen[:6], []) == perm0
    perm1 = torch.randperm(n, generator=torch.Generator().manual_seed(4)).tolist()
    assert seen[6] == perm1[:3] and seen[7] == perm1[3:8]  # last size-3 batch, then size 5 from sample 3
    assert state["batch_size"] == 3 and state["offset"] == 8 and state["position"] == 2

    # resume at step 4 (mid-epoch, after a batch size change) and run the rest of the schedule
    r = ResumableSampler(n, 7, seed=3)  # constructed with another batch size; the state restores it
    r.load_state_dict(state)
    assert r.batch_size == 3
    rest, _ = run_schedule(r, [(3, 3), (5, 6)])
    assert rest == seen[4:]


def test_resume_on_a_different_world_size_continues_the_stream():
    s = ResumableSampler(24, 4, seed=1)
    it = iter(s)
    for _ in range(3):
        next(it)
        s.advance()
    state = s.state_dict()  # 12 samples of epoch 0 consumed
    ranks = []
    for r in range(2):
        t = ResumableSampler(24, 4, seed=1, rank=r, world_size=2)
        t.load_state_dict(state)
        assert t.offset == 12 and t.position == 0
        ranks.append(take(iter(t), 3))
    perm = torch.randperm(24, generator=torch.Generator().manual_seed(1)).tolist()
    assert ranks[0][0] + ranks[1][0] == perm[12:20]
    epoch1 = torch.randperm(24, generator=torch.Generator().manual_seed(2)).tolist()
    assert ranks[0][1] + ranks[1][1] == epoch1[:8]  # 4 samples left in epoch 0 < global batch 8: dropped


class IndexDataset(torch.utils.data.Dataset):
    def __len__(self):
        return 1000

    def __getitem__(self, i):
        return torch.tensor(i)


def test_dataloader_batch_sampler_with_workers_and_resume():
    s = ResumableSampler(13, 4, seed=11)
    expected = take(iter(s), 12)
    for workers in (0, 2):
        s = ResumableSampler(13, 4, seed=11)
        loader = DataLoader(IndexDataset(), batch_sampler=s, num_workers=workers)
        it = iter(loader)
        got = []
        for _ in range(5):
            got.append(next(it).tolist())
            s.advance()  # workers prefetched further; the state counts only consumed batches
        assert got == expected[:5]
        assert (s.epoch, s.position) == (1, 2)
        state = s.state_dict()
        del it

        r = ResumableSampler(13, 4, seed=11)
        r.load_state_dict(state)
        got = [b.tolist() for b in islice(DataLoader(IndexDataset(), batch_sampler=r, num_workers=workers), 7)]
        assert got == expected[5:]


def test_yield_epoch_pairs():
    s = ResumableSampler(6, 3, seed=0, yield_epoch=True)
    b = take(iter(s), 3)
    plain = take(iter(ResumableSampler(6, 3, seed=0)), 3)
    assert [[i for i, _ in x] for x in b] == plain
    assert [{e for _, e in x} for x in b] == [{0}, {0}, {1}]
