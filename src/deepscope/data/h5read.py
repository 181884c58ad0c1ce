"""Reading HDF5 files in whole batches, from any process: what the lazy HDF5 stores share.

* :class:`H5Handle` opens the file on first use in each process and drops the handle when pickled,
  so every DataLoader worker (forked or spawned, persistent or not) opens its own; h5py handles
  must not cross processes.
* :func:`take_rows` reads the rows of a batch in file order: the chunks the batch fills densely as
  whole-chunk slices (each chunk read and decompressed once, the rows picked in memory), the
  scattered rest one plain slice per run of consecutive rows.
* :func:`chunk_cache_bytes` sizes HDF5's chunk cache from the datasets' chunk shapes.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from deepscope.errors import DataError

__all__ = ["H5Handle", "LAZY_THRESHOLD_BYTES", "LazyStore", "chunk_cache_bytes", "chunk_rows", "lazy_or_loaded",
           "open_h5", "take_rows"]

log = logging.getLogger(__name__)

LAZY_THRESHOLD_BYTES = 1 << 30  # lazy: auto keeps less than this in memory
_MIB = 1 << 20
_CACHE_CHUNKS = 8  # the auto chunk cache holds this many of the largest chunks
_CACHE_MIN, _CACHE_MAX = 1 * _MIB, 64 * _MIB
_GAP_BYTES = 4 * _MIB  # contiguous datasets: rows this close together are read as one slice
_ROW_READ_BYTES = 64 << 10  # a slice is read whole when it costs at most this per wanted row (one row's own
# read costs HDF5 tens of microseconds, as long as copying 64 KiB)


def open_h5(path: Path, what: str = "data.path", **kwargs: Any) -> Any:
    """``path`` opened read-only, once it is known to exist and to be HDF5.

    Raises:
        DataError: naming ``what`` and the file, when it is missing, a folder, or not HDF5.
    """
    import h5py

    path = Path(path)
    if not path.exists():
        raise DataError(f"{what}: '{path}' not found")
    if path.is_dir():
        raise DataError(f"{what}: '{path}' is a folder; expected an HDF5 file")
    if not h5py.is_hdf5(path):
        raise DataError(f"{what}: '{path}' is not an HDF5 file (no HDF5 signature)")
    try:
        return h5py.File(path, "r", **kwargs)
    except (OSError, ValueError) as exc:
        raise DataError(f"{what}: '{path}' cannot be read as HDF5 ({exc})") from None


class H5Handle:
    """A read-only HDF5 file opened lazily, once per process.

    Args:
        path: the file.
        cache_bytes: HDF5's chunk cache per dataset (``rdcc_nbytes``); None: h5py's default (1 MiB).
        what: how errors name the file's config key.
    """

    def __init__(self, path: Path, cache_bytes: int | None = None, what: str = "data.path") -> None:
        self.path = Path(path)
        self.cache_bytes = cache_bytes
        self.what = what
        self._file: Any = None
        self._pid: int | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_file"], state["_pid"] = None, None  # an open handle must not cross processes
        return state

    @property
    def file(self) -> Any:
        """This process's handle, opened on first use (a forked worker drops the parent's unused)."""
        if self._file is None or self._pid != os.getpid():
            self._file = None
            kwargs: dict[str, Any] = {}
            if self.cache_bytes is not None:
                # slots: a prime well above the chunks that fit, as HDF5's docs advise
                kwargs = {"rdcc_nbytes": int(self.cache_bytes), "rdcc_nslots": 10007}
            self._file = open_h5(self.path, self.what, **kwargs)
            self._pid = os.getpid()
        return self._file

    def close(self) -> None:
        """Close this process's handle (the next read opens the file again)."""
        if self._file is not None and self._pid == os.getpid():
            try:
                self._file.close()
            except Exception:  # noqa: BLE001 - closing a dead handle must not fail a run
                pass
        self._file, self._pid = None, None


def chunk_rows(ds: Any) -> int | None:
    """Samples per storage chunk along axis 0, or None for contiguous storage."""
    return int(ds.chunks[0]) if ds.chunks else None


def chunk_cache_bytes(datasets: list[Any], cache_mb: float | None = None) -> int | None:
    """The chunk cache per dataset: ``cache_mb`` MiB; else, when a dataset is compressed (or otherwise
    filtered), room for a few of its largest chunks, so that a chunk decompressed for one batch is
    still there for the next rows of it; else None (HDF5's default, 1 MiB).

    Uncompressed chunks get no larger cache on purpose: a chunk that does not fit is read straight
    into the batch, only the rows asked for, while a cached one is read whole for every scattered row.
    """
    if cache_mb is not None:
        return int(cache_mb * _MIB)
    filtered = [ds for ds in datasets if ds.chunks and (ds.compression or ds.shuffle or ds.fletcher32 or ds.scaleoffset)]
    if not filtered:
        return None
    largest = max(int(np.prod(ds.chunks)) * ds.dtype.itemsize for ds in filtered)
    return int(min(_CACHE_MAX, max(_CACHE_MIN, _CACHE_CHUNKS * largest)))


def _runs_of(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and last value of each run of consecutive values in increasing ``ids``."""
    breaks = np.flatnonzero(np.diff(ids) > 1)
    return ids[np.r_[0, breaks + 1]], ids[np.r_[breaks, len(ids) - 1]]


def _runs_at(rows: np.ndarray, at: np.ndarray) -> list[tuple[int, int]]:
    """``[first, last]`` positions (in ``at``, increasing) of each run of consecutive rows."""
    breaks = np.flatnonzero((np.diff(at) != 1) | (np.diff(rows[at]) != 1))
    return list(zip(at[np.r_[0, breaks + 1]].tolist(), at[np.r_[breaks, len(at) - 1]].tolist()))


def take_rows(ds: Any, rows: np.ndarray, where: str) -> tuple[np.ndarray, int]:
    """Rows (increasing, unique) of a dataset, and how many rows were read from the file.

    The rows are grouped into spans: the runs of neighbouring storage chunks they touch (chunked
    datasets), or groups less than a few MiB apart (contiguous ones). A span that the rows fill
    densely (a quarter or more of its rows), or that is small (at most 64 KiB per row wanted), is
    read as one slice of whole chunks. The rows of a sparse span are read one plain slice per run of
    consecutive rows, so a randomly drawn batch does not read a whole chunk per sample (HDF5's chunk
    cache, :func:`chunk_cache_bytes`, keeps the compressed chunks it decompressed). A loop of plain
    slices is about twice as fast as h5py's point selection of the same rows, which builds the
    selection row by row (bench/README.md, ``hdf5_loader.py read``).

    Raises:
        DataError: naming ``where`` when HDF5 cannot read them (a corrupt or truncated file).
    """
    rows = np.asarray(rows, dtype=np.int64)
    try:
        if len(rows) == 0:
            return ds[0:0], 0
        row_bytes = max(1, int(np.prod(ds.shape[1:])) * ds.dtype.itemsize)
        per = chunk_rows(ds)
        if per is None:  # spans: groups of rows less than a few MiB apart
            cut = np.flatnonzero(np.diff(rows) > max(1, _GAP_BYTES // row_bytes)) + 1
            los = rows[np.r_[0, cut]]
            his = rows[np.r_[cut - 1, len(rows) - 1]] + 1
        else:  # spans: runs of neighbouring chunks
            first, last = _runs_of(np.unique(rows // per))
            los, his = first * per, np.minimum((last + 1) * per, ds.shape[0])
        if len(los) == 1 and his[0] - los[0] == len(rows):
            return ds[int(los[0]):int(his[0])], len(rows)
        stops = np.searchsorted(rows, his, side="left")
        starts = np.r_[0, stops[:-1]]
        wanted, width = stops - starts, his - los
        dense = (4 * wanted >= width) | (width * row_bytes <= wanted * _ROW_READ_BYTES)
        out = np.empty((len(rows), *ds.shape[1:]), ds.dtype)
        read = int(width[dense].sum())
        for k in np.flatnonzero(dense):
            lo, a, b = int(los[k]), int(starts[k]), int(stops[k])
            out[a:b] = ds[lo:int(his[k])][rows[a:b] - lo]
        if not dense.all():  # one plain slice per run of consecutive rows: cheaper than h5py's point selections
            at = np.flatnonzero(np.repeat(~dense, wanted))
            for a, b in _runs_at(rows, at):
                out[a:b + 1] = ds[int(rows[a]):int(rows[b]) + 1]
            read += len(at)
        return out, read
    except (OSError, RuntimeError, ValueError, TypeError, KeyError) as exc:
        raise DataError(f"{where}: cannot be read ({exc})") from None


def _reorder(batch: dict[str, Any], order: np.ndarray) -> dict[str, Any]:
    return {k: (_reorder(v, order) if isinstance(v, dict) else v[order]) for k, v in batch.items()}


def _arrays(batch: dict[str, Any], prefix: str = "") -> list[tuple[str, np.ndarray]]:
    out: list[tuple[str, np.ndarray]] = []
    for key, value in batch.items():
        if isinstance(value, dict):
            out.extend(_arrays(value, f"{prefix}{key}/"))
        elif isinstance(value, np.ndarray):
            out.append((f"{prefix}{key}", value))
    return out


class LazyStore:
    """A :class:`~deepscope.data.dataset.SampleStore` that reads its samples from an HDF5 file as asked.

    Subclasses say how many samples they hold (``_n``), how many bytes one takes
    (:meth:`sample_bytes`) and how to read increasing unique sample positions
    (:meth:`_read_sorted`); this base reads any positions (sorted, then put back in order), streams
    whole-set passes in bounded chunks, checks values and loads everything into memory.

    ``rows_read`` counts the samples' rows fetched from the file (a measure of how much is read).
    """

    _n: int
    h5: H5Handle
    chunk_bytes = 64 * _MIB  # at most this much per read of a whole-set pass

    def __len__(self) -> int:
        return self._n

    def sample_bytes(self) -> int:
        raise NotImplementedError

    def _read_sorted(self, positions: np.ndarray) -> dict[str, Any]:
        raise NotImplementedError

    def close(self) -> None:
        """Close this process's file handle (DataLoader workers must not inherit an open one)."""
        self.h5.close()

    def _positions(self, positions: np.ndarray) -> np.ndarray:
        positions = np.asarray(positions, dtype=np.int64).reshape(-1)
        if positions.size and (positions.min() < 0 or positions.max() >= self._n):
            raise IndexError(f"{self!r}: position out of range 0..{self._n - 1}")
        return positions

    def read(self, positions: np.ndarray) -> dict[str, Any]:
        """A batch in the data contract's layout (numpy, channels first), in the order asked."""
        positions = self._positions(positions)
        if positions.size < 2 or bool(np.all(positions[1:] > positions[:-1])):
            return self._read_sorted(positions)
        uniq, inverse = np.unique(positions, return_inverse=True)
        return _reorder(self._read_sorted(uniq), inverse)

    def chunk_samples(self) -> int:
        """Samples per read of a whole-set pass (at most :attr:`chunk_bytes`)."""
        return int(max(1, min(4096, self.chunk_bytes // max(1, self.sample_bytes()))))

    def chunks(self) -> Any:
        """Yield ``(positions, batch)`` over every sample, a bounded chunk at a time."""
        step = self.chunk_samples()
        for start in range(0, self._n, step):
            positions = np.arange(start, min(start + step, self._n))
            yield positions, self.read(positions)

    def check_finite(self, where: str) -> None:
        """Raise :class:`DataError` naming the array and the first sample with NaN or inf (streams the set)."""
        for positions, batch in self.chunks():
            for key, arr in _arrays(batch):
                if not np.issubdtype(arr.dtype, np.floating):
                    continue
                bad = ~np.isfinite(arr)
                if bad.any():
                    first = int(positions[int(np.argwhere(bad)[0][0])])
                    raise DataError(f"{where}['{key}']: {self.describe_sample(key, first)} holds NaN/inf "
                                    f"({int(bad.sum())} value(s) in samples {int(positions[0])}.."
                                    f"{int(positions[-1])}); clean the data or set data.check_finite: false")

    def describe_sample(self, key: str, position: int) -> str:
        """How errors name one sample of one array (subclasses name the dataset)."""
        return f"'{self.h5.path}', sample {position}"

    def load(self) -> Any:
        """Every sample in an in-memory :class:`~deepscope.data.arrays.ArraySet` (read chunk by chunk)."""
        from deepscope.data.arrays import ArraySet

        out: dict[str, Any] = {}

        def fill(dst: dict[str, Any], src: dict[str, Any], sl: slice) -> None:
            for key, value in src.items():
                if isinstance(value, dict):
                    fill(dst.setdefault(key, {}), value, sl)
                else:
                    if key not in dst:
                        dst[key] = np.empty((self._n, *value.shape[1:]), dtype=value.dtype)
                    dst[key][sl] = value

        for positions, batch in self.chunks():
            fill(out, batch, slice(int(positions[0]), int(positions[-1]) + 1))
        loaded = ArraySet.from_batch(out)
        loaded.target_names = tuple(getattr(self, "target_names", ()) or ())
        return loaded


def lazy_or_loaded(stores: dict[str, LazyStore], lazy: bool | str, what: str) -> dict[str, Any]:
    """The stores as they are (lazy), or each loaded into memory and closed, as a source's ``lazy``
    key says (``auto``: in memory when they take less than :data:`LAZY_THRESHOLD_BYTES`)."""
    total = sum(len(s) * s.sample_bytes() for s in stores.values())
    if not isinstance(lazy, bool):
        lazy = total >= LAZY_THRESHOLD_BYTES
    log.info("%s: %s, %.1f MiB", what, "lazy" if lazy else "in memory", total / 2**20)
    if lazy:
        return dict(stores)
    out: dict[str, Any] = {}
    for key, store in stores.items():
        out[key] = store.load()
        store.close()
    return out
