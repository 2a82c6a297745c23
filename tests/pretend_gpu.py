"""A pretend GPU for CPU-only tests: code believes its tensors live on another device, while every op runs on
the CPU. Tests then catch the device-mixing bugs a real GPU would catch (a CPU tensor fed to a model whose
weights are "on the GPU" raises, as on CUDA), and the float64 bugs MPS would catch.

How it works. A `PretendTensor` is a wrapper tensor subclass: it reports device `meta` and holds the real CPU
tensor in `.elem`. The `PretendGPU` dispatch mode sees every ATen op: it unwraps pretend tensors, runs the op
on the CPU, and wraps the results again when an input was a pretend tensor or the op asked for the pretend
device (`torch.zeros(3, device=x.device)`, `t.to(x.device)`). The subclass has the same handler, so pretend
tensors keep working outside the mode (e.g. `.cpu()` after the `with` block); the mode is only needed for ops
without a pretend input (factories, `cpu_tensor.to(PRETEND_DEVICE)`).

Why `meta` and not a renamed PrivateUse1 device ("pretend_gpu")? Wrapper tensors of a device need that
device's guard (ATen opens a DeviceGuard for many ops and for autograd). On the CPU wheel a renamed
PrivateUse1 backend has no guard implementation registered, so those ops fail; `meta` is built in and has
one. "cuda" itself cannot be the pretend device: `torch.device("cuda")` can be made, but the CPU wheel refuses
`.to("cuda")` and `device="cuda"` ("Torch not compiled with CUDA enabled") before any dispatch mode sees the
call. Hence `pretend_cuda` redirects "cuda" to `meta` in `joyvasa.devices.torch_device`, the one place
devices are made.

Not a real GPU: `.is_cuda` is False and `.is_meta` is True, `data_ptr()` is 0, `x.cuda()` still fails, and
`module.to(dev)` gives new Parameter objects (CUDA keeps them). Ops run with CPU semantics and give the CPU's
numbers, except where torch picks a kernel by device type: scaled_dot_product_attention (and so transformer
layers) takes its math path here instead of the CPU's fused kernel, equal to ~1e-6, not bit for bit. Pretend
tensors cannot be pickled / torch.save'd (TypeError), and `.data` of one only takes another pretend tensor.

Usage in a test:

    from tests.pretend_gpu import on_pretend_gpu, is_pretend

    def test_renderer_on_gpu(monkeypatch):
        with on_pretend_gpu(monkeypatch) as dev:    # "cuda" -> pretend device; the dispatch mode is on
            device = resolve_device("auto")         # == dev
            model = build_model().to(device)
            out = model(image.to(device))           # a CPU input here would raise, as on CUDA
            assert is_pretend(out)
            result = out.cpu()                      # a plain CPU tensor again

or take the `pretend_gpu` fixture: `from tests.pretend_gpu import pretend_gpu_fixture  # noqa: F401` in the
test module, then `def test_x(pretend_gpu): ...` (it yields the pretend device, mode on).
"""
from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Iterator

import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map, tree_unflatten

PRETEND_DEVICE = torch.device("meta")
_CPU = torch.device("cpu")
_aten = torch.ops.aten

# Ops that take index tensors: CUDA accepts CPU indices there (the op moves them to the device itself), so a
# CPU tensor in the indices argument is no device mix.
_INDEX_OPS = {_aten.index, _aten.index_put, _aten.index_put_, _aten._index_put_impl_, _aten._unsafe_index,
              _aten._unsafe_index_put}
# Cross-device copies are legal on CUDA (`gpu_tensor.copy_(cpu_tensor)`, `gpu[:2] = cpu_tensor`).
_CROSS_DEVICE_OPS = {_aten.copy_, _aten.copy}
# `x.type_as(other)` moves x to other's device: `other` is no operand. The mode sees it only where autograd
# does not decompose it first, under torch.inference_mode (`x.to(other)` arrives as to.device there).
_MOVE_LIKE_OPS = {_aten.type_as}
# Questions about the tensors themselves (not their values), answered for the wrappers: nn.Module._apply asks
# this one (through the mode under torch.inference_mode) to choose between `param.data = ` and a new Parameter.
_WRAPPER_QUERIES = {_aten._has_compatible_shallow_copy_type}
# Below the Python key an op on a wrapper runs the meta kernel: it updates the wrapper's own sizes/strides.
_BELOW_PYTHON = (torch._C.DispatchKeySet(torch._C.DispatchKey.Python)
                 | torch._C.DispatchKeySet(torch._C.DispatchKey.PythonTLSSnapshot))

# Whether float64 is refused on the pretend device (as MPS does); the innermost active PretendGPU sets it.
_refuse_float64 = [True]


class DeviceMixError(RuntimeError):
    """A pretend-GPU tensor met a CPU tensor in one op; CUDA raises a RuntimeError there too."""


class PretendTensor(torch.Tensor):
    """A tensor that reports the pretend device (`meta`) and holds its real CPU values in `.elem`."""

    elem: torch.Tensor
    # Tensor methods must reach __torch_dispatch__ unchanged, and their results must not be cast to this class.
    __torch_function__ = torch._C._disabled_torch_function_impl

    @staticmethod
    def __new__(cls, elem: torch.Tensor, requires_grad: bool = False):
        if isinstance(elem, PretendTensor) or elem.device.type != "cpu":
            raise TypeError(f"PretendTensor holds a plain CPU tensor, got {type(elem).__name__} on {elem.device}")
        wrapper = torch.Tensor._make_wrapper_subclass(
            cls, elem.shape, strides=elem.stride(), storage_offset=elem.storage_offset(), dtype=elem.dtype,
            layout=elem.layout, device=PRETEND_DEVICE, requires_grad=requires_grad)
        wrapper.elem = elem
        return wrapper

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        # Reached when no PretendGPU mode is active (e.g. after the `with` block): same rules.
        return _dispatch(func, args, kwargs or {}, refuse_float64=_refuse_float64[-1])

    def __repr__(self, *, tensor_contents=None):
        # The stock repr prints "..." for meta tensors; show the values the pretend GPU holds.
        from torch._tensor_str import _str, _tensor_str

        indent = len(type(self).__name__) + 1
        return _str(self, tensor_contents=_tensor_str(self.elem.detach(), indent))

    def __format__(self, format_spec):
        # f"{loss:.3f}" works for a 0-dim CUDA tensor; Tensor.__format__ only does that for plain tensors.
        if self.dim() == 0:
            return self.elem.item().__format__(format_spec)
        return super().__format__(format_spec)

    def numpy(self, *, force: bool = False):
        # Tensor.numpy says "not supported for tensor subclasses"; raise what CUDA raises instead.
        if force:
            return self.elem.detach().numpy(force=True)
        raise TypeError("can't convert meta device type tensor to numpy. Use Tensor.cpu() to copy the tensor to "
                        "host memory first. (pretend GPU: as on CUDA/MPS)")

    def tolist(self):
        # Works on CUDA (copies to the host); Tensor.tolist refuses tensor subclasses.
        return self.elem.tolist()

    def __reduce_ex__(self, protocol):
        # Pickling would store an empty meta tensor (the values live in .elem): refuse instead of losing them.
        raise TypeError("pretend GPU: a pretend-GPU tensor cannot be pickled or torch.save'd (it would be saved "
                        "as an empty meta tensor); save t.cpu()")

    @property
    def data(self):
        return torch._C.TensorBase.data.__get__(self)

    @data.setter
    def data(self, new):
        # `.data = ` swaps the TensorImpl but not the Python attributes: .elem must follow by hand. nn.Module
        # casts (`module.half()` on the pretend GPU) assign `.data` like this.
        if not isinstance(new, PretendTensor):
            raise TypeError("pretend GPU: `.data` of a pretend-GPU tensor can only be set to a pretend-GPU tensor, "
                            f"got {type(new).__name__} on {new.device}")
        torch._C.TensorBase.data.__set__(self, new)
        self.elem = new.elem


def is_pretend(t) -> bool:
    """True for a tensor on the pretend GPU."""
    return isinstance(t, PretendTensor)


def _is_plain_cpu(a) -> bool:
    return isinstance(a, torch.Tensor) and not isinstance(a, PretendTensor) and a.device.type == "cpu"


def _is_pretend_device(a) -> bool:
    return isinstance(a, torch.device) and a.type == PRETEND_DEVICE.type


def _check_no_mix(func, args, kwargs) -> None:
    """Raise as CUDA does when a pretend tensor meets a CPU tensor of dim > 0 (0-dim CPU scalars are fine)."""
    if func.overloadpacket in _CROSS_DEVICE_OPS:
        return
    if func.overloadpacket in _INDEX_OPS:
        args = (args[0],) + tuple(args[2:])  # leave the indices out
    flat, _ = tree_flatten((args, kwargs))
    if any(_is_plain_cpu(a) and a.dim() > 0 for a in flat):
        raise DeviceMixError("Expected all tensors to be on the same device, but found at least two devices, "
                             f"meta (pretend GPU) and cpu! (in {func})")


def _wrap(t: torch.Tensor, func, refuse_float64: bool) -> PretendTensor:
    if refuse_float64 and t.dtype == torch.float64:
        raise TypeError("Cannot convert a MPS Tensor to float64 dtype as the MPS framework doesn't support "
                        f"float64. Please use float32 instead. (pretend GPU, in {func}: float64 is refused as on "
                        "MPS; PretendGPU(refuse_float64=False) allows it)")
    if torch.is_inference_mode_enabled() and not t.is_inference():
        # A view of a normal tensor made under inference_mode is a normal tensor (it shares its base's version
        # counter); made here, the wrapper would be an inference tensor and autograd would refuse it.
        with torch.inference_mode(False):
            return PretendTensor(t)
    return PretendTensor(t)


def _follow_metadata(t: PretendTensor) -> None:
    """After an in-place op that changed the shape or strides of `.elem` (unsqueeze_, t_, resize_, set_, out=
    resized), give the wrapper the same: its sizes are its own, set when it was made."""
    e = t.elem
    if t.shape == e.shape and t.stride() == e.stride() and t.storage_offset() == e.storage_offset():
        return
    with torch._C._ExcludeDispatchKeyGuard(_BELOW_PYTHON):
        needed = e.untyped_storage().nbytes() // e.element_size()
        if t.untyped_storage().nbytes() < needed * t.element_size():
            _aten.resize_.default(t, [needed])  # room for the new view in the wrapper's (meta) storage
        _aten.as_strided_.default(t, e.shape, e.stride(), e.storage_offset())


def _dispatch(func, args, kwargs, refuse_float64: bool):
    if func.overloadpacket in _WRAPPER_QUERIES:
        with torch._C._ExcludeDispatchKeyGuard(_BELOW_PYTHON):
            return func(*args, **kwargs)
    flat, spec = tree_flatten((args, kwargs))
    any_pretend = any(isinstance(a, PretendTensor) for a in flat)
    move_like = func.overloadpacket in _MOVE_LIKE_OPS and len(args) > 1 and isinstance(args[1], torch.Tensor)
    if move_like:
        asks_pretend, asks_cpu = is_pretend(args[1]), not is_pretend(args[1])
    else:
        # A device argument: factories, _to_copy(device=...) from .to() / .cpu(), to.device under inference_mode.
        asks_pretend = any(_is_pretend_device(a) for a in flat)
        asks_cpu = any(isinstance(a, torch.device) and a.type == "cpu" for a in flat)
    hollow = [a for a in flat if isinstance(a, torch.Tensor) and not isinstance(a, PretendTensor)
              and a.device.type == PRETEND_DEVICE.type]
    if hollow:  # made on the pretend device by torch internals without a dispatched copy: its values are lost
        raise RuntimeError(f"pretend GPU: {func} got a tensor without data on the pretend device (shape "
                           f"{tuple(hollow[0].shape)}); build it on the CPU and move it with .to(device)")
    if any_pretend and not move_like:
        _check_no_mix(func, args, kwargs)
    if (any_pretend or asks_pretend) and any(isinstance(a, torch.Generator) and a.device.type == "cpu" for a in flat):
        # CUDA refuses to draw device random numbers from a CPU generator (draw on the CPU, then move them).
        raise RuntimeError("Expected a 'meta' (pretend GPU) device type for generator but found 'cpu' "
                           f"(in {func})")

    # Run on the CPU: pretend tensors give their CPU tensor, the pretend device becomes the CPU.
    unwrapped = [a.elem if isinstance(a, PretendTensor) else _CPU if _is_pretend_device(a) else a for a in flat]
    # An op that returns one of its inputs (in-place ops, out=) must return the caller's object, wrapper or not.
    inputs_by_id = {id(u): a for u, a in zip(unwrapped, flat) if isinstance(a, torch.Tensor)}
    cpu_args, cpu_kwargs = tree_unflatten(unwrapped, spec)
    out = func(*cpu_args, **cpu_kwargs)

    wrap = asks_pretend or (any_pretend and not asks_cpu)

    def rewrap(o):
        if not isinstance(o, torch.Tensor):
            return o  # bools, numbers, None (item, equal, is_nonzero, in-place foreach ops)
        original = inputs_by_id.get(id(o))
        if original is None:
            return _wrap(o, func, refuse_float64) if wrap else o
        # The op returned an input. `aten.to` does so when nothing changes on the CPU; if the call was a move
        # between the CPU and the pretend GPU, it copies (as a real move does).
        if isinstance(original, PretendTensor):
            if asks_cpu:
                return o.clone()
            _follow_metadata(original)  # in-place ops, out=
            return original
        return _wrap(o.clone(), func, refuse_float64) if asks_pretend else original

    return tree_map(rewrap, out)


# Python-level tensor constructors that build from data: given device=meta they make a real, empty meta tensor
# without ever dispatching a copy, so they are caught one level up (torch function) and built on the CPU first.
_DATA_CONSTRUCTORS = {torch.tensor, torch.as_tensor, torch.asarray, torch.Tensor.new_tensor}


_INDEXING = {torch.Tensor.__getitem__, torch.Tensor.__setitem__}


def _cpu_index(index):
    """Python lists in an index become CPU index tensors. Left as lists, torch turns them into index tensors on
    the indexed tensor's device inside C++, without a dispatched copy: on the pretend device that is an empty
    meta tensor, and the indexing silently does nothing."""
    if isinstance(index, list):
        return torch.tensor(index, device=_CPU)
    if isinstance(index, tuple):
        return tuple(_cpu_index(i) for i in index)
    return index


class _PretendConstructors(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func in _INDEXING and len(args) >= 2 and is_pretend(args[0]):
            return func(args[0], _cpu_index(args[1]), *args[2:], **kwargs)
        if func not in _DATA_CONSTRUCTORS:
            return func(*args, **kwargs)
        data = args[1] if func is torch.Tensor.new_tensor else args[0]
        device = kwargs.get("device")
        if device is None and func is torch.Tensor.new_tensor:
            device = args[0].device  # new_tensor defaults to self's device
        if device is None or torch.device(device).type != PRETEND_DEVICE.type or isinstance(data, torch.Tensor):
            return func(*args, **kwargs)  # a tensor as data is moved by an ordinary (dispatched) copy
        requires_grad = kwargs.pop("requires_grad", False)
        kwargs["device"] = _CPU
        return func(*args, **kwargs).to(PRETEND_DEVICE).requires_grad_(requires_grad)


class PretendGPU(TorchDispatchMode):
    """Dispatch mode that runs every op on the CPU while pretend tensors report the pretend device.

    refuse_float64: refuse float64 tensors on the pretend device, as MPS does (TypeError).
    """

    def __init__(self, refuse_float64: bool = True):
        super().__init__()
        self.refuse_float64 = refuse_float64
        self._stack: contextlib.ExitStack | None = None

    def __enter__(self):
        self._stack = contextlib.ExitStack()
        self._stack.enter_context(_PretendConstructors())
        # load_state_dict warns that copying into meta parameters is a no-op: here the copy does happen.
        self._stack.enter_context(warnings.catch_warnings())
        warnings.filterwarnings("ignore", message=r"for .*: copying from a non-meta parameter in the checkpoint")
        _refuse_float64.append(self.refuse_float64)
        self._stack.callback(_refuse_float64.pop)
        return super().__enter__()

    def __exit__(self, exc_type, exc_value, traceback):
        try:
            return super().__exit__(exc_type, exc_value, traceback)
        finally:
            self._stack.close()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return _dispatch(func, args, kwargs or {}, refuse_float64=self.refuse_float64)


def pretend_cuda(monkeypatch) -> torch.device:
    """Make the library believe a CUDA GPU with bf16 is here, and that "cuda" is the pretend device.

    Patches `torch.cuda.is_available` and `torch.cuda.is_bf16_supported` (-> True), and `torch_device` in every
    imported module whose name ends with `joyvasa.devices` (the library is imported both as `joyvasa` and as
    `joyvasa_pack.joyvasa`, see tests/pack.py), so `resolve_device("cuda")` and `resolve_device("auto")` give
    PRETEND_DEVICE; other kinds are unchanged. Undone with `monkeypatch`. Returns PRETEND_DEVICE.
    Tensors only become pretend tensors under PretendGPU (see `on_pretend_gpu`).
    """
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    for name, module in list(sys.modules.items()):
        if module is None or not name.endswith("joyvasa.devices") or not hasattr(module, "torch_device"):
            continue

        def torch_device(kind: str, _real=module.torch_device) -> torch.device:
            return PRETEND_DEVICE if kind == "cuda" else _real(kind)

        monkeypatch.setattr(module, "torch_device", torch_device)
    return PRETEND_DEVICE


@contextlib.contextmanager
def on_pretend_gpu(monkeypatch=None, *, refuse_float64: bool = True) -> Iterator[torch.device]:
    """`pretend_cuda` plus the PretendGPU mode for the `with` block; yields PRETEND_DEVICE.

    With pytest's `monkeypatch` the patches last until the test ends; without one, only for the block.
    """
    patches = contextlib.nullcontext(monkeypatch) if monkeypatch is not None else pytest.MonkeyPatch.context()
    with patches as mp, PretendGPU(refuse_float64=refuse_float64):
        yield pretend_cuda(mp)


@pytest.fixture(name="pretend_gpu")
def pretend_gpu_fixture(monkeypatch) -> Iterator[torch.device]:
    """Fixture `pretend_gpu`: the test body runs on the pretend GPU; yields PRETEND_DEVICE."""
    with on_pretend_gpu(monkeypatch) as device:
        yield device
