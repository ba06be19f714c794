"""Lazy, chunked convolution of ``dask.array.Array`` inputs (API.md section 8).

The output is cut into blocks along batch and spatial axes; channels stay in
one chunk. For every output block the exact input window it reads (its halo
from kernel extent, stride and dilation) is gathered from the whole input
with the same border rule as one-piece execution, so border pixels come from
the array's outer border only, never from an inner chunk boundary, and the
stitched result equals the one-piece result exactly. Output chunk boundaries
are the input's chunk boundaries divided by the stride (rounded up), so any
chunking works and chunk sizes that are multiples of the stride give regular
output chunks.

Each block runs as an ordinary clconv call on the worker that computes it,
with the backend *name* given by the caller (or the worker's own default), so
the same graph runs on the threaded scheduler or a ``dask.distributed``
cluster with each worker on its own device.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._borders import source_index
from ._normalize import normalize_conv, result_dtype
from ._spec import ConvSpec

__all__ = ["is_dask_array", "conv_dask"]


def is_dask_array(obj: Any) -> bool:
    """True for a ``dask.array.Array`` (checked without importing dask)."""
    if type(obj) is np.ndarray:  # the usual operand, without the module-name test
        return False
    return type(obj).__module__.startswith("dask.") and hasattr(obj, "__dask_graph__")


def _stand_in(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A zero-strided array of ``shape``: lets the one normaliser validate a dask input."""
    return np.lib.stride_tricks.as_strided(np.zeros(1, dtype), shape=shape,
                                           strides=(0,) * len(shape))


def _host(operand: Any) -> Any:
    return operand.compute() if is_dask_array(operand) else operand


def _output_bounds(in_chunks: tuple[int, ...], spec: ConvSpec, axis: int) -> list[int]:
    """Output chunk boundaries along a spatial axis: ``ceil(edge / stride)`` for each
    inner input chunk edge, so stride 1 keeps the input's chunks and stride s
    divides them by s (regular chunks stay regular when s divides the chunk size).
    """
    stride, out = spec.stride[axis], spec.out_size[axis]
    edges = np.cumsum((0, *in_chunks))[1:-1]
    bounds = {0, out}
    for edge in edges:
        bounds.add(min(-(-int(edge) // stride), out))
    return sorted(bounds)


def _run_block(piece: np.ndarray, fills: list[np.ndarray], weight: Any, bias: Any,
               spec: ConvSpec, backend: str | None) -> np.ndarray:
    from .functional import conv1d, conv2d, conv3d

    first = 1 if spec.channels_last else 2
    if any(mask.any() for mask in fills):
        piece = np.array(piece, copy=True)
        for axis, mask in enumerate(fills):
            index = [slice(None)] * piece.ndim
            index[first + axis] = mask
            piece[tuple(index)] = spec.fill_value
    conv = (conv1d, conv2d, conv3d)[spec.ndim - 1]
    return conv(piece, weight, bias, spec.stride, 0, spec.dilation, spec.groups,
                data_format="channels_last" if spec.channels_last else "channels_first",
                flip=spec.flip, backend=backend)


def conv_dask(ndim: int, input: Any, weight: Any, bias: Any, stride: Any, padding: Any,
              dilation: Any, groups: Any, padding_mode: Any, data_format: Any, flip: Any,
              backend: str | None) -> Any:
    """conv{ndim}d of a dask array: a lazy dask array with the one-piece result's values."""
    import dask
    import dask.array as da

    if backend is not None and not isinstance(backend, str):
        backend = getattr(backend, "name", backend)
    dtype = result_dtype(input.dtype, "input")
    weight, bias = _host(weight), _host(bias)
    call = normalize_conv(ndim, _stand_in(input.shape, dtype), weight, bias, stride, padding,
                          dilation, groups, padding_mode, data_format, flip,
                          check_memory=False)
    spec, weight, bias = call.spec, call.weight, call.bias
    x = (input[None] if call.unbatched else input).astype(dtype)
    channel_axis = x.ndim - 1 if spec.channels_last else 1
    first = 1 if spec.channels_last else 2
    x = x.rechunk({channel_axis: -1})

    extent = [(k - 1) * d + 1 for k, d in zip(spec.kernel_size, spec.dilation)]
    spatial_bounds = [_output_bounds(x.chunks[first + i], spec, i) for i in range(ndim)]
    batch_bounds = list(np.cumsum((0, *x.chunks[0])))

    run = dask.delayed(_run_block, pure=True)

    def make_block(block: tuple[int, ...]) -> Any:
        b0, b1 = batch_bounds[block[0]], batch_bounds[block[0] + 1]
        piece = x[b0:b1]
        fills, out_size = [], []
        for axis in range(ndim):
            o0 = spatial_bounds[axis][block[1 + axis]]
            o1 = spatial_bounds[axis][block[1 + axis] + 1]
            start = o0 * spec.stride[axis] - spec.pad_before[axis]
            stop = (o1 - 1) * spec.stride[axis] + extent[axis] - spec.pad_before[axis]
            index = source_index(np.arange(start, stop), spec.in_size[axis], spec.border)
            fills.append(index < 0)
            index = np.maximum(index, 0)
            lo, hi = int(index.min()), int(index.max()) + 1
            take: list[Any] = [slice(None)] * piece.ndim
            contiguous = hi - lo == index.size and np.array_equal(index, np.arange(lo, hi))
            take[first + axis] = slice(lo, hi) if contiguous else index
            piece = piece[tuple(take)]
            out_size.append(o1 - o0)
        shape = ((b1 - b0, *out_size, spec.out_channels) if spec.channels_last
                 else (b1 - b0, spec.out_channels, *out_size))
        return da.from_delayed(run(piece, fills, weight, bias, spec, backend),
                               shape=shape, dtype=np.dtype(spec.dtype))

    # da.block wants one nesting level per output axis; channels are one block.
    levels = [len(batch_bounds) - 1] + [len(b) - 1 for b in spatial_bounds]
    levels.insert(len(levels) if spec.channels_last else 1, None)

    def nest(prefix: tuple[int, ...], remaining: list[int | None]) -> Any:
        if not remaining:
            return make_block(prefix)
        count, rest = remaining[0], remaining[1:]
        if count is None:
            return [nest(prefix, rest)]
        return [nest((*prefix, i), rest) for i in range(count)]

    nested = nest((), levels)
    y = da.block(nested)
    return y[0] if call.unbatched else y

