"""The Backend protocol that built-in and plug-in backends implement."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .._spec import ConvSpec


@dataclass(frozen=True)
class DeviceInfo:
    """One OpenCL device, the backend name that selects it, and whether it works.

    ``works`` is False when the health probe failed on it; ``problem`` then
    says why in one line (else it is None).
    """

    backend: str
    platform: str
    name: str
    type: str
    compute_units: int
    global_mem: int
    max_alloc: int
    fp64: bool
    fp16: bool
    driver_version: str = ""
    works: bool = True
    problem: str | None = None
    opencl_c_version: str = ""
    max_work_group_size: int = 0
    local_mem: int = 0
    native_float_width: int = 1  # floats per native vector (16 on AVX-512 CPUs)


@runtime_checkable
class Backend(Protocol):
    """What a clconv backend provides.

    A backend is created by a factory ``factory(option)`` registered with
    :func:`clconv.register_backend` (or the ``clconv.backends`` entry-point
    group). ``option`` is the part of the backend name after ``"name:"``, or
    ``None``. The factory raises :class:`clconv.BackendUnavailable` with the
    reason when the backend cannot run here.

    Arrays handed to a backend are already validated and described by a
    :class:`~clconv._spec.ConvSpec`:

    * ``x`` has the spec's ``input_shape`` (always batched; channels first or
      last as ``spec.channels_last`` says). Host operands are NumPy arrays of
      dtype ``spec.dtype``, possibly non-contiguous or negatively strided;
      device operands (such as ``pyopencl.array.Array``) come as the user gave
      them, and may be another backend's.
    * ``weight`` is ``(F, C // groups, *kernel)``; ``bias`` is ``(F,)`` or ``None``.
    * Results have the spec's ``output_shape`` and dtype ``spec.dtype``.

    Device arrays: the front end never names an array library. It asks the
    registry whether an operand is a device array and how to read it back;
    the registry asks each created backend's :meth:`owns` and
    :meth:`to_host` (and, for the built-in backends, a recogniser module that
    answers before any backend object exists). A backend without device
    memory owns nothing, and reads other backends' arrays through
    :func:`clconv.backends.to_host`.

    Optional capabilities, looked for by name:

    * ``to_device(array)``: upload a host array into this backend's device
      memory and return the device array (one of its own passes through).
      Having it is what "has device memory" means: ``clconv.to_device``
      refuses backends without it, and the front end keeps intermediate
      results on the device only where it exists.
    * ``conv_transpose(grad_output, weight, bias, spec)``: the input gradient
      alone plus ``bias`` (one per input channel of ``spec``), with the
      input's shape: the transposed convolution. A backend without it gets
      ``conv_backward``'s grad_input (on a zero input) plus the bias instead.
    * ``saturate(y, dtype)``: one of its own float device arrays converted on
      the device to integer ``dtype`` (rounded to nearest, ties to even,
      clamped, NaN to 0), so only the integer result is read back.
    * ``separable_min_taps``: an int; :func:`clconv.filter2d` runs a rank-1
      kernel with at least this many taps as two 1-D passes. Without it every
      kernel runs as one pass, the right choice where a second launch and an
      intermediate buffer cost more than the taps they save.
    * ``conv_forward_into(y, x, parts)`` (with ``empty_result(shape, dtype)``,
      which allocates ``y``): several host forward convolutions, each part
      ``(spec, x_at, x_strides, weight, bias, y_at, y_strides)`` reading a view
      of the C-contiguous ``x`` and writing one of ``y`` (element offsets and
      strides), run together; False where it cannot (nothing run). The
      transposed convolution writes its stride phases with it; without it
      they run one by one into views of the result.
    * ``host_view(array)``: a context manager giving a device array over a
      host array's own memory where the device shares it (no upload), for
      work read back inside the block; :func:`clconv.filter2d` uses it for
      the image of its on-device integer pipeline.

    Attributes:
        name: the full name that selects this backend, e.g. ``"opencl:0:0"``.
    """

    name: str

    def conv_forward(self, x: Any, weight: Any, bias: Any, spec: ConvSpec) -> Any:
        """The convolution (cross-correlation unless ``spec.flip``) plus bias."""
        ...

    def conv_backward(self, x: Any, weight: Any, grad_output: Any, spec: ConvSpec,
                      ) -> tuple[Any, Any, Any]:
        """``(grad_input, grad_weight, grad_bias)`` of the forward pass for ``grad_output``.

        ``grad_bias`` is the sum of ``grad_output`` over batch and positions
        (returned whether or not the forward pass had a bias).
        """
        ...

    def owns(self, obj: Any) -> bool:
        """Whether ``obj`` is a device array of this backend's kind (False for host data)."""
        ...

    def to_host(self, array: Any) -> np.ndarray:
        """A NumPy array with the values of ``array`` (host data, or a device array this
        backend owns), once the work that computes them is done."""
        ...
