"""Decoded images left in `datasets`' memory-mapped Arrow cache (`condense distill --memory-mapped`): rows read on request."""

from __future__ import annotations

import copy

import numpy as np
import torch


def chunk_pixels(chunk, shape: tuple[int, int, int]) -> np.ndarray:
    """One Arrow chunk of the fixed-shape `pixels` column as a zero-copy uint8 view [rows,H,W,C]."""
    return chunk.storage.flatten().flatten().flatten().to_numpy(zero_copy_only=False).reshape(-1, *shape)


class ArrowImages:
    """Decoded uint8 images [N,C,H,W] left in the split's memory-mapped Arrow cache, read per request.

    Indexing (a tensor of indices on any device, a list or a slice) reads only those rows, into CPU memory;
    `.to(device)` reads all of them.
    """

    dtype = torch.uint8
    _rows: np.ndarray | None = None  # a view's rows of the split (`select`); None: all of them, in order

    def __init__(self, decoded, shape_hwc: tuple[int, int, int]):
        # zero-copy numpy views [rows, H, W, C] of every Arrow chunk: pages are read only when rows are
        self._chunks = [chunk_pixels(chunk, shape_hwc) for chunk in decoded.data.column("pixels").chunks]
        self._starts = np.cumsum([0] + [len(chunk) for chunk in self._chunks])
        height, width, channels = shape_hwc
        self.shape = torch.Size((len(decoded), channels, height, width))

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index) -> torch.Tensor:
        rows = np.arange(len(self))[index] if isinstance(index, slice) else torch.as_tensor(index).reshape(-1).cpu().numpy()
        if self._rows is not None:
            rows = self._rows[rows]
        chunk_of = np.searchsorted(self._starts, rows, side="right") - 1
        pixels = np.empty((len(rows), *self._chunks[0].shape[1:]), dtype=np.uint8) if self._chunks else np.zeros((0, 1, 1, 1), np.uint8)
        for chunk in np.unique(chunk_of):
            where = chunk_of == chunk
            pixels[where] = self._chunks[chunk][rows[where] - self._starts[chunk]]
        return torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()

    def to(self, device) -> torch.Tensor:
        return self[:].to(device)

    def select(self, rows: torch.Tensor) -> ArrowImages:
        """The images at `rows`, still memory-mapped (a view: nothing is read)."""
        view = copy.copy(self)
        view._rows = (np.arange(len(self)) if self._rows is None else self._rows)[torch.as_tensor(rows).reshape(-1).cpu().numpy()]
        view.shape = torch.Size((len(view._rows), *self.shape[1:]))
        return view
