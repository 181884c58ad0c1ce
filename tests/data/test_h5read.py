"""Reading HDF5 in whole batches (deepscope.data.h5read): values against h5py's own full reads, what is
read from the file, errors naming the file and dataset, handles across processes, the chunk cache."""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle

import h5py
import numpy as np
import pytest

from deepscope.data import h5read
from deepscope.data.h5read import H5Handle, LazyStore, chunk_cache_bytes, open_h5, take_rows
from deepscope.errors import DataError

MIB = 1 << 20

# (shape, chunks along axis 0 or None for contiguous, gzip)
LAYOUTS = [
    ((97,), 10, False),
    ((97,), None, False),
    ((103, 5), 8, True),
    ((103, 5), None, False),
    ((61, 4, 3), 7, True),
    ((61, 4, 3), 16, False),
    ((61, 4, 3), None, False),
    ((40, 3, 4, 2), 1, True),
    ((40, 3, 4, 2), 40, True),  # one chunk holds the dataset
    ((48, 40, 500), 6, True),  # 78 KiB rows: sparse chunks are read row by row
    ((48, 40, 500), None, False),
]


def _write(path, shape, chunk, gzip, dtype=np.float32, name="x"):
    data = np.random.default_rng(sum(shape)).normal(size=shape).astype(dtype)
    kwargs = {}
    if chunk is not None:
        kwargs["chunks"] = (chunk, *shape[1:])
        if gzip:
            kwargs["compression"] = "gzip"
    with h5py.File(path, "a") as f:
        f.create_dataset(name, data=data, **kwargs)
    return data


def _spans(rows, n, per, gap):
    """The runs of neighbouring chunks the rows touch (chunked), or the groups of rows at most ``gap``
    apart (contiguous), as [lo, hi) row ranges."""
    if per is not None:
        chunks = sorted({int(r) // per for r in rows})
        runs = [[chunks[0], chunks[0]]]
        for c in chunks[1:]:
            if c == runs[-1][1] + 1:
                runs[-1][1] = c
            else:
                runs.append([c, c])
        return [(a * per, min((b + 1) * per, n)) for a, b in runs]
    groups = [[int(rows[0]), int(rows[0])]]
    for r in rows[1:]:
        if r - groups[-1][1] > gap:
            groups.append([int(r), int(r)])
        else:
            groups[-1][1] = int(r)
    return [(a, b + 1) for a, b in groups]


def _expected_read(rows, n, per, gap, row_bytes):
    """Rows fetched per the rule of take_rows: a span a quarter or more full, or cheap to read whole (at most
    ``_ROW_READ_BYTES`` per row wanted), is read whole; the rows of the other spans alone."""
    total = 0
    for lo, hi in _spans(rows, n, per, gap):
        inside = int(np.sum((rows >= lo) & (rows < hi)))
        whole = 4 * inside >= hi - lo or (hi - lo) * row_bytes <= inside * h5read._ROW_READ_BYTES
        total += (hi - lo) if whole else inside
    return total


def _touched(rows, n, per, gap):
    """Every row of the spans the rows touch: the most a read may fetch."""
    return sum(hi - lo for lo, hi in _spans(rows, n, per, gap))


def _random_rows(rng, n):
    kind = rng.integers(4)
    if kind == 0:  # scattered
        k = int(rng.integers(1, n + 1))
        return np.sort(rng.choice(n, size=k, replace=False))
    if kind == 1:  # one run
        a = int(rng.integers(n))
        return np.arange(a, int(rng.integers(a + 1, n + 1)))
    if kind == 2:  # a few runs
        starts = np.sort(rng.choice(n, size=int(rng.integers(1, 4)), replace=False))
        return np.unique(np.concatenate([np.arange(s, min(n, s + int(rng.integers(1, 12)))) for s in starts]))
    return np.sort(rng.choice(n, size=min(n, int(rng.integers(1, 5))), replace=False))  # a handful


@pytest.mark.parametrize("shape, chunk, gzip", LAYOUTS, ids=[f"{s}-{c}-{'gz' if g else 'raw'}" for s, c, g in LAYOUTS])
def test_take_rows_equals_a_full_read(tmp_path, shape, chunk, gzip):
    path = tmp_path / "d.h5"
    _write(path, shape, chunk, gzip)
    rng = np.random.default_rng(1)
    with h5py.File(path, "r") as f:
        ds = f["x"]
        full = ds[()]
        assert (ds.chunks is None) == (chunk is None)
        row_bytes = int(np.prod(shape[1:])) * 4
        gap = max(1, h5read._GAP_BYTES // row_bytes)
        for _ in range(60):
            rows = _random_rows(rng, shape[0])
            out, read = take_rows(ds, rows, "x")
            assert out.dtype == full.dtype and out.shape == (len(rows), *shape[1:])
            np.testing.assert_array_equal(out, full[rows])
            assert len(rows) <= read <= _touched(rows, shape[0], chunk, gap)  # never more than the chunks touched
            assert read == _expected_read(rows, shape[0], chunk, gap, row_bytes)
        every, read = take_rows(ds, np.arange(shape[0]), "x")
        np.testing.assert_array_equal(every, full)
        assert read == shape[0]
        empty, read = take_rows(ds, np.array([], dtype=np.int64), "x")
        assert empty.shape == (0, *shape[1:]) and read == 0


def test_rows_read_by_hand(tmp_path):
    path = tmp_path / "d.h5"
    small = _write(path, (95, 2), 10, True)
    big = _write(path, (40, 16384), 8, True, name="big")  # 64 KiB rows, 512 KiB chunks
    with h5py.File(path, "r") as f:
        cases = [
            ("x", [3], 10),                       # small rows: the whole chunk is cheaper than the row alone
            ("x", list(range(10, 20)), 10),       # exactly one chunk
            ("x", [0, 1, 2, 50], 20),             # chunks 0 and 5, whole
            ("x", [90, 91, 92, 93, 94], 5),       # the last, partial chunk
            ("x", [5, 94], 15),
            ("big", [3], 1),                      # large rows, one of a chunk: the row alone
            ("big", [3, 5], 8),                   # a quarter of the chunk: all of it
            ("big", [0, 20], 2),
            ("big", [0, 1, 20], 8 + 1),
            ("big", [0, 1, 8, 9], 16),            # neighbouring chunks 0 and 1: one span, a quarter full
            ("big", [0, 9], 2),                   # the same span, sparse
            ("big", list(range(40)), 40),
        ]
        for name, rows, read in cases:
            out, got = take_rows(f[name], np.array(rows), name)
            np.testing.assert_array_equal(out, (small if name == "x" else big)[rows])
            assert got == read, (name, rows, got)


def test_contiguous_rows_far_apart_are_read_apart(tmp_path, monkeypatch):
    path = tmp_path / "d.h5"
    data = _write(path, (200, 4), None, False)
    monkeypatch.setattr(h5read, "_GAP_BYTES", 3 * 16)  # rows more than 3 apart: separate groups
    with h5py.File(path, "r") as f:
        cases = [
            ([0, 3, 6, 9], 10),         # one group, dense
            ([0, 4], 2),                # two groups of one row
            ([0, 2, 100, 101, 102], 3 + 3),
            ([0, 3, 6, 9, 12, 15, 18, 21, 24, 27, 30, 33, 36, 39, 42, 45, 48, 51, 54, 57, 60], 61),  # 21 of 61: dense
            ([0, 3, 6, 9, 12, 15, 18, 21, 24, 27, 30, 33, 36, 39, 42, 45, 48, 51, 54, 57, 60, 199], 62),
        ]
        for rows, read in cases:
            out, got = take_rows(f["x"], np.array(rows), "x")
            np.testing.assert_array_equal(out, data[rows])
            assert got == read, (rows, got)


# --- errors naming the file and the dataset -----------------------------------------------------------


def _corrupt_chunk(path, name, chunk_index):
    with h5py.File(path, "r") as f:
        info = f[name].id.get_chunk_info(chunk_index)
    with open(path, "r+b") as fh:
        fh.seek(info.byte_offset)
        fh.write(b"\xff" * info.size)
    return info.chunk_offset[0]


@pytest.mark.parametrize("rows", [[16, 17, 18, 19], [17], list(range(64)), [0, 1, 2, 3, 4, 5, 6, 7, 17]],
                         ids=["chunk", "one-row", "all", "dense-then-sparse"])
def test_a_corrupt_chunk_is_a_data_error_naming_the_dataset(tmp_path, rows):
    path = tmp_path / "d.h5"
    data = _write(path, (64, 20), 8, True, dtype=np.float64)
    assert _corrupt_chunk(path, "x", 2) == 16
    where = f"data file '{path}', dataset '/x'"
    with h5py.File(path, "r") as f:
        with pytest.raises(DataError, match="cannot be read") as info:
            take_rows(f["x"], np.array(rows), where)
        assert str(info.value).startswith(where)
        out, _ = take_rows(f["x"], np.arange(8), where)  # the chunks left intact still read
        np.testing.assert_array_equal(out, data[:8])


def test_open_h5_errors_name_the_key_and_file(tmp_path):
    missing = tmp_path / "nowhere.h5"
    with pytest.raises(DataError, match=rf"^data.path: '{missing}' not found$"):
        open_h5(missing)
    with pytest.raises(DataError, match=rf"^data.sets: '{tmp_path}' is a folder; expected an HDF5 file$"):
        open_h5(tmp_path, "data.sets")
    text = tmp_path / "notes.h5"
    text.write_text("just text, long enough to look like a file " * 20)
    with pytest.raises(DataError, match=rf"^data.path: '{text}' is not an HDF5 file"):
        open_h5(text)
    truncated = tmp_path / "cut.h5"
    _write(truncated, (64, 50), 8, False)
    os.truncate(truncated, os.path.getsize(truncated) - 4000)
    with pytest.raises(DataError, match=rf"^data.path: '{truncated}' cannot be read as HDF5 \(.*truncated"):
        open_h5(truncated)


# --- handles across processes --------------------------------------------------------------------------


def _child_read(handle, queue):
    queue.put((os.getpid(), float(handle.file["x"][3, 1]), handle._pid))


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_handle_reopens_in_a_child_process(tmp_path, method):
    if method not in mp.get_all_start_methods():
        pytest.skip(f"no {method} start method here")
    path = tmp_path / "d.h5"
    data = _write(path, (10, 3), 2, True)
    handle = H5Handle(path)
    assert handle.file["x"][0, 0] == data[0, 0]  # opened in this process first
    ctx = mp.get_context(method)
    queue = ctx.Queue()
    child = ctx.Process(target=_child_read, args=(handle, queue))
    child.start()
    pid, value, opened_in = queue.get(timeout=60)
    child.join(60)
    assert child.exitcode == 0
    assert pid != os.getpid() and opened_in == pid  # the child opened its own handle
    assert value == data[3, 1]
    assert handle._pid == os.getpid() and handle.file["x"][3, 1] == data[3, 1]  # the parent's still works
    handle.close()


def test_handle_is_dropped_when_pickled(tmp_path):
    path = tmp_path / "d.h5"
    data = _write(path, (10, 3), None, False)
    handle = H5Handle(path, cache_bytes=3 * MIB, what="data.path")
    handle.file  # noqa: B018 - open it
    copy = pickle.loads(pickle.dumps(handle))
    assert copy._file is None and copy.path == path and copy.cache_bytes == 3 * MIB
    np.testing.assert_array_equal(copy.file["x"][()], data)
    assert copy.file.id.get_access_plist().get_cache()[2] == 3 * MIB  # rdcc_nbytes as asked
    assert handle.file.id.valid  # pickling left the original open
    handle.close()
    copy.close()
    assert handle._file is None
    np.testing.assert_array_equal(handle.file["x"][2], data[2])  # reopened after close
    handle.close()


def test_handle_names_the_key_of_a_missing_file(tmp_path):
    handle = H5Handle(tmp_path / "gone.h5", what="data.sets.val")
    with pytest.raises(DataError, match=r"^data.sets.val: '.*gone.h5' not found"):
        handle.file  # noqa: B018


# --- chunk cache ---------------------------------------------------------------------------------------


def test_chunk_cache_bytes_bounds_and_explicit_size(tmp_path):
    path = tmp_path / "d.h5"
    with h5py.File(path, "w") as f:  # shapes only: no chunk is written
        gz = {"compression": "gzip"}
        tiny = f.create_dataset("tiny", shape=(100, 4), dtype="f4", chunks=(10, 4), **gz)
        mid = f.create_dataset("mid", shape=(1000, 256, 64), dtype="f4", chunks=(4, 256, 64), **gz)  # 256 KiB
        big = f.create_dataset("big", shape=(1000, 1024, 1024), dtype="f4", chunks=(16, 1024, 1024), **gz)  # 64 MiB
        shuffled = f.create_dataset("shuffled", shape=(1000, 128, 64), dtype="f8", chunks=(2, 128, 64), shuffle=True)
        raw = f.create_dataset("raw", shape=(1000, 1024, 1024), dtype="f4", chunks=(16, 1024, 1024))
        flat = f.create_dataset("flat", shape=(100, 4), dtype="f8")
        assert chunk_cache_bytes([tiny]) == MIB  # at least 1 MiB
        assert chunk_cache_bytes([tiny, mid]) == 8 * 256 * 1024  # 8 of the largest compressed chunks
        assert chunk_cache_bytes([tiny, mid, big]) == 64 * MIB  # at most 64 MiB
        assert chunk_cache_bytes([shuffled, tiny]) == 8 * 128 * 1024  # any filter counts
        # unfiltered data: HDF5's default cache (None), however large its chunks
        assert chunk_cache_bytes([raw, flat]) is None
        assert chunk_cache_bytes([]) is None
        assert chunk_cache_bytes([raw, mid]) == 8 * 256 * 1024  # only filtered chunks size it
        # an explicit size is taken as given
        assert chunk_cache_bytes([big], cache_mb=2.5) == int(2.5 * MIB)
        assert chunk_cache_bytes([flat], cache_mb=200) == 200 * MIB


# --- the lazy store base ----------------------------------------------------------------------------------


class RowStore(LazyStore):
    """A minimal lazy store: rows of dataset 'x' as images, 'y' as targets."""

    def __init__(self, path, chunk_bytes=None):
        self.h5 = H5Handle(path)
        with h5py.File(path, "r") as f:
            self._n = f["x"].shape[0]
            self._row = int(np.prod(f["x"].shape[1:])) * 4
        self.rows_read = 0
        if chunk_bytes is not None:
            self.chunk_bytes = chunk_bytes

    def sample_bytes(self):
        return self._row + 4

    def _read_sorted(self, positions):
        assert np.all(np.diff(positions) > 0), "the base hands sorted unique positions"
        x, read = take_rows(self.h5.file["x"], positions, "x")
        y, _ = take_rows(self.h5.file["y"], positions, "y")
        self.rows_read += read
        return {"images": {"a": x[:, None]}, "targets": y}


@pytest.fixture
def row_file(tmp_path):
    path = tmp_path / "rows.h5"
    x = _write(path, (50, 3, 4), 4, True)
    y = _write(path, (50,), None, False, name="y")
    return path, x, y


def test_lazy_store_reads_any_order_with_repeats(row_file):
    path, x, y = row_file
    store = RowStore(path)
    rng = np.random.default_rng(2)
    for positions in ([7, 3, 3, 49, 0, 7], [5], [], list(range(49, -1, -1)), rng.integers(0, 50, 40)):
        positions = np.asarray(positions, dtype=np.int64)
        batch = store.read(positions)
        np.testing.assert_array_equal(batch["images"]["a"][:, 0], x[positions])
        np.testing.assert_array_equal(batch["targets"], y[positions])
    with pytest.raises(IndexError, match=r"position out of range 0..49"):
        store.read(np.array([3, 50]))
    with pytest.raises(IndexError, match=r"position out of range"):
        store.read(np.array([-1]))
    store.close()


def test_lazy_store_chunks_are_bounded_and_cover_every_sample(row_file):
    path, x, y = row_file
    store = RowStore(path, chunk_bytes=7 * (3 * 4 * 4 + 4))  # 7 samples per read
    assert store.chunk_samples() == 7
    seen = []
    for positions, batch in store.chunks():
        assert len(positions) <= 7
        np.testing.assert_array_equal(batch["images"]["a"][:, 0], x[positions])
        seen.extend(positions.tolist())
    assert seen == list(range(50))
    loaded = store.load()
    np.testing.assert_array_equal(loaded.images["a"][:, 0], x)
    np.testing.assert_array_equal(loaded.targets, y)
    assert loaded.images["a"].dtype == np.float32


def test_lazy_store_check_finite_names_the_sample(row_file):
    path, x, _ = row_file
    store = RowStore(path, chunk_bytes=7 * (3 * 4 * 4 + 4))
    store.check_finite("data")  # clean: no error
    store.close()
    with h5py.File(path, "a") as f:
        f["x"][23, 1, 2] = np.nan
        f["x"][26, 0, 0] = np.inf
    with pytest.raises(DataError) as info:
        store.check_finite("data['train']")
    message = str(info.value)
    assert message.startswith("data['train']['images/a']: ")
    assert f"'{path}', sample 23 holds NaN/inf" in message
    assert "2 value(s) in samples 21..27" in message and "data.check_finite: false" in message
