"""The pretend GPU test helper itself: ops run through it give the CPU's numbers on the pretend device, device
mixes raise as on CUDA, float64 is refused as on MPS, and `pretend_cuda` points the library's "cuda" at it."""
from __future__ import annotations

import copy
import importlib
import pickle

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import joyvasa.devices
from tests.pack import NAME as PACK_NAME
from tests.pretend_gpu import (
    PRETEND_DEVICE,
    PretendGPU,
    is_pretend,
    on_pretend_gpu,
    pretend_cuda,
    pretend_gpu_fixture,  # noqa: F401  (the `pretend_gpu` fixture)
)

PACK_DEVICES = importlib.import_module(f"{PACK_NAME}.joyvasa.devices")
MIX = "Expected all tensors to be on the same device"


@pytest.fixture
def gpu():
    """The PretendGPU mode only (no patches of torch.cuda or the library); yields the pretend device."""
    with PretendGPU():
        yield PRETEND_DEVICE


def seeded(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def module(cls, *args, **kwargs) -> nn.Module:
    """A module with seeded weights (the global RNG is left as it was)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return cls(*args, **kwargs)


def on(dev, value):
    """A copy of a CPU tensor or module on `dev`."""
    return copy.deepcopy(value).to(dev)


# name -> (function of CPU-or-pretend inputs, the CPU inputs)
OPS = {
    "linear": (lambda m, x: m(x), lambda: (module(nn.Linear, 5, 3), seeded(4, 5))),
    "conv2d": (lambda m, x: m(x), lambda: (module(nn.Conv2d, 3, 4, 3, padding=1), seeded(2, 3, 8, 8))),
    "conv3d": (lambda m, x: m(x), lambda: (module(nn.Conv3d, 3, 4, 3, padding=1), seeded(1, 3, 4, 6, 6))),
    "grid_sample": (lambda x, g: F.grid_sample(x, g, align_corners=False),
                    lambda: (seeded(1, 3, 8, 8), seeded(1, 5, 5, 2, seed=1).tanh())),
    "grid_sample_3d": (lambda x, g: F.grid_sample(x, g, align_corners=True),
                       lambda: (seeded(1, 2, 4, 6, 6), seeded(1, 3, 5, 5, 3, seed=1).tanh())),
    "interpolate_bilinear": (lambda x: F.interpolate(x, scale_factor=2, mode="bilinear"),
                             lambda: (seeded(1, 3, 5, 5),)),
    "interpolate_nearest": (lambda x: F.interpolate(x, size=(7, 3)), lambda: (seeded(1, 3, 5, 5),)),
    "softmax": (lambda x: x.softmax(-1), lambda: (seeded(4, 6),)),
    "matmul": (lambda a, b: a @ b, lambda: (seeded(4, 6), seeded(6, 2, seed=1))),
    "cat": (lambda a, b: torch.cat([a, b], dim=1), lambda: (seeded(4, 6), seeded(4, 2, seed=1))),
    "reshape_permute": (lambda x: x.reshape(2, 3, 4).permute(2, 0, 1).contiguous(), lambda: (seeded(6, 4),)),
    "view_expand": (lambda x: x.view(3, 1, 8).expand(3, 5, 8) * 2, lambda: (seeded(4, 6),)),
    "indexing": (lambda x: x[1:, ::2][:, None, -1], lambda: (seeded(4, 6),)),
    "index_with_cpu_indices": (lambda x: x[torch.tensor([2, 0, 2])], lambda: (seeded(4, 6),)),
    "boolean_mask": (lambda x: x[x > 0], lambda: (seeded(4, 6),)),
    "comparison": (lambda a, b: (a > b) | (a == a.max()), lambda: (seeded(4, 6), seeded(4, 6, seed=1))),
    "bfloat16": (lambda m, x: m(x.bfloat16()).float(),
                 lambda: (module(nn.Conv2d, 3, 4, 3, padding=1).bfloat16(), seeded(2, 3, 8, 8))),
}


@pytest.mark.parametrize("name", OPS)
def test_op_gives_the_cpu_numbers_on_the_pretend_device(gpu, name):
    fn, make_inputs = OPS[name]
    inputs = make_inputs()
    expected = fn(*inputs)
    out = fn(*(on(gpu, i) for i in inputs))
    assert is_pretend(out) and out.device == PRETEND_DEVICE
    assert torch.equal(out.cpu(), expected)


GRAD_MODES = [torch.enable_grad, torch.no_grad, torch.inference_mode]  # inference_mode: the mode sees aten.to


@pytest.mark.parametrize("grad_mode", GRAD_MODES)
def test_to_the_pretend_device_wraps_a_copy(gpu, grad_mode):
    cpu = seeded(2, 3)
    with grad_mode():
        x = cpu.to(gpu)
        x.add_(1)
        assert is_pretend(cpu.type_as(x))
    assert is_pretend(x) and x.device.type == "meta" and x.shape == (2, 3)
    assert torch.equal(x.elem, cpu + 1), "the pretend tensor must not alias its CPU source"


def test_plain_tensors_are_not_pretend(gpu):
    assert not is_pretend(torch.ones(3)) and not is_pretend(seeded(2).to(gpu).cpu())


@pytest.mark.parametrize("grad_mode", GRAD_MODES)
def test_cpu_unwraps_to_a_plain_copy(gpu, grad_mode):
    x = seeded(2, 3).to(gpu)
    with grad_mode():
        backs = [x.cpu(), x.to("cpu"), x.to(torch.device("cpu"), torch.float64).float(), x.type_as(torch.ones(1))]
        for b in backs:
            assert type(b) is torch.Tensor and b.device.type == "cpu"
            assert torch.equal(b, x.elem)
        back = x.cpu().zero_()
    assert not torch.equal(back, x.elem), ".cpu() must copy, as it does from a real GPU"


def test_inplace_op_updates_the_held_tensor_and_returns_the_wrapper(gpu):
    x = torch.zeros(2, 3, device=gpu)
    assert x.add_(2) is x
    assert torch.equal(x.cpu(), torch.full((2, 3), 2.0))


def test_setitem_updates_the_held_tensor(gpu):
    x = torch.zeros(3, 4, device=gpu)
    x[1] = torch.ones(4, device=gpu)
    x[torch.tensor([0, 2]), 1:3] = torch.full((2, 2), 5.0).to(gpu)
    x[x > 4] += 1
    expected = torch.zeros(3, 4)
    expected[1] = 1
    expected[[0, 2], 1:3] = 6
    assert torch.equal(x.cpu(), expected)


def test_a_view_holds_a_cpu_view_of_the_same_storage(gpu):
    x = torch.zeros(3, 4, device=gpu)
    row = x[1, 1:]
    assert row.elem.untyped_storage().data_ptr() == x.elem.untyped_storage().data_ptr()
    assert row.elem.storage_offset() == row.storage_offset() == 5
    row.fill_(7)
    assert x.cpu()[1].tolist() == [0, 7, 7, 7]


def test_inplace_shape_changes_reach_the_wrapper(gpu):
    x = seeded(2, 3).to(gpu)
    assert x.unsqueeze_(0) is x and x.shape == x.elem.shape == (1, 2, 3)
    x.transpose_(0, 2)
    assert x.shape == (3, 2, 1) and x.stride() == x.elem.stride()
    z = torch.empty(0, device=gpu)
    torch.add(seeded(2, 3).to(gpu), 1, out=z)
    assert z.shape == z.elem.shape == (2, 3)


def test_factory_with_a_pretend_tensors_device_is_wrapped(gpu):
    x = seeded(2).to(gpu)
    made = [torch.zeros(3, device=x.device), torch.arange(4, device=x.device), torch.full((2,), 1.5, device=x.device),
            torch.tensor([1.0, 2.0], device=x.device), torch.as_tensor(np.ones(2, np.float32), device=x.device),
            x.new_tensor([3.0]), x.new_zeros(2), torch.zeros_like(x), torch.randn(2, device=x.device)]
    assert all(is_pretend(t) for t in made)
    assert torch.tensor([1.0, 2.0], device=x.device).tolist() == [1.0, 2.0]


def test_factory_with_device_cpu_stays_plain(gpu):
    x = seeded(2).to(gpu)
    assert not is_pretend(torch.zeros_like(x, device="cpu")) and not is_pretend(torch.zeros(2, device="cpu"))


def test_cpu_generator_draw_then_move(gpu):
    drawn = torch.randn(3, 4, generator=torch.Generator().manual_seed(7)).to(gpu)
    assert is_pretend(drawn) and torch.equal(drawn.cpu(), seeded(3, 4, seed=7))


def test_drawing_on_the_device_from_a_cpu_generator_raises(gpu):
    with pytest.raises(RuntimeError, match="device type for generator"):
        torch.randn(3, device=gpu, generator=torch.Generator().manual_seed(0))


def test_from_numpy_then_to(gpu):
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    x = torch.from_numpy(a).to(gpu)
    assert is_pretend(x) and x.tolist() == a.tolist()


def test_module_to_wraps_parameters_and_state_dict(gpu):
    m = module(nn.Linear, 3, 2).to(gpu)
    assert next(m.parameters()).device == PRETEND_DEVICE
    assert all(is_pretend(p) and isinstance(p, nn.Parameter) for p in m.parameters())
    assert all(is_pretend(v) for v in m.state_dict().values())


def test_load_state_dict_into_a_pretend_module_copies(recwarn, gpu):
    src = module(nn.Linear, 3, 2)
    m = nn.Linear(3, 2).to(gpu)
    m.load_state_dict(src.state_dict())
    assert torch.equal(m.weight.cpu(), src.weight.detach()) and is_pretend(m.weight)
    # torch warns that copying into meta parameters is a no-op; here it is not, so the warning is silenced
    assert not [w for w in recwarn if "meta" in str(w.message)]


def test_module_cast_on_the_pretend_device_follows(gpu):
    m = module(nn.Linear, 3, 2).to(gpu).half()
    assert m.weight.dtype == m.weight.elem.dtype == torch.float16
    assert m(seeded(1, 3).to(gpu).half()).dtype == torch.float16


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode])
def test_grad_free_modes(gpu, context):
    m = module(nn.Linear, 3, 2)
    x = seeded(4, 3)
    with torch.no_grad():
        expected = m(x)
    with context():
        out = m.to(gpu)(x.to(gpu))
    assert is_pretend(out) and is_pretend(m.weight) and torch.equal(out.cpu(), expected)


def test_views_of_normal_tensors_under_inference_mode(gpu):
    m = module(nn.Linear, 3, 2).to(gpu)
    with torch.inference_mode():
        weight = m.weight.view(6)[None].expand(2, 6)
        bias = m.bias.to(torch.ones(2, device=gpu))  # no-op move: the parameter itself
    assert is_pretend(weight) and not weight.is_inference() and bias is m.bias
    assert torch.equal(weight.cpu()[1], m.weight.cpu().reshape(6))


def test_attention_matches_the_cpu_within_rounding(gpu):
    """On a non-CPU device SDPA takes its math path, not the CPU's fused kernel: close, not bit-equal."""
    q, k, v = seeded(2, 4, 16, 8), seeded(2, 4, 16, 8, seed=1), seeded(2, 4, 16, 8, seed=2)
    out = F.scaled_dot_product_attention(q.to(gpu), k.to(gpu), v.to(gpu))
    assert is_pretend(out)
    torch.testing.assert_close(out.cpu(), F.scaled_dot_product_attention(q, k, v), atol=1e-5, rtol=1e-5)


def test_backward_gives_the_cpu_gradients(gpu):
    m_cpu = module(nn.Linear, 3, 2)
    m = on(gpu, m_cpu)
    x = seeded(4, 3)
    m(x.to(gpu)).square().sum().backward()
    m_cpu(x).square().sum().backward()
    assert is_pretend(m.weight.grad) and torch.allclose(m.weight.grad.cpu(), m_cpu.weight.grad)


def test_repr_shows_the_values_and_the_device(gpu):
    text = repr(torch.tensor([1.5, -2.0], device=gpu))
    assert "1.5000" in text and "-2.0000" in text and "device='meta'" in text
    assert f"{torch.tensor(0.25, device=gpu):.2f}" == "0.25"


def test_scalar_conversions_and_comparisons(gpu):
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]], device=gpu)
    assert x.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert x.sum().item() == 10.0 and float(x.max()) == 4.0 and int(x[1, 0]) == 3
    assert bool(x.min() == 1) and not bool(x.min() > 1)
    assert torch.equal(x, x.clone()) and not torch.equal(x, x + 1)
    assert (x > 2).dtype == torch.bool and torch.allclose(x, x * 1.0)


@pytest.mark.parametrize("op", [
    pytest.param(lambda g, c: module(nn.Linear, 3, 2).to(g)(c), id="linear_cpu_input"),
    pytest.param(lambda g, c: c @ g.T, id="matmul"),
    pytest.param(lambda g, c: torch.cat([g, c]), id="cat"),
    pytest.param(lambda g, c: g + c, id="add"),
    pytest.param(lambda g, c: c.add_(g), id="cpu_inplace_add"),
    pytest.param(lambda g, c: g.index_put_((torch.tensor([0]),), c[:1]), id="index_put_cpu_values"),
])
def test_pretend_and_cpu_tensors_in_one_op_raise(gpu, op):
    pretend, cpu = seeded(4, 3).to(gpu), seeded(4, 3, seed=1)
    with pytest.raises(RuntimeError, match=MIX):
        op(pretend, cpu)


def test_zero_dim_cpu_tensors_are_allowed(gpu):
    x = torch.ones(3, device=gpu)
    out = x * torch.tensor(2.0) + torch.tensor(1.0)
    assert is_pretend(out) and out.tolist() == [3.0, 3.0, 3.0]


def test_copy_from_the_cpu_is_allowed(gpu):
    x = torch.zeros(2, 3, device=gpu)
    x[0] = torch.ones(3)
    x[1].copy_(torch.full((3,), 2.0))
    assert x.tolist() == [[1.0] * 3, [2.0] * 3]


def test_numpy_fails_as_on_a_gpu(gpu):
    x = torch.ones(2, device=gpu)
    with pytest.raises(TypeError, match="can't convert meta device type tensor to numpy. Use Tensor.cpu()"):
        x.numpy()
    with pytest.raises(TypeError, match="Use Tensor.cpu()"):
        np.asarray(x)


def test_pickling_is_refused_rather_than_saving_no_values(gpu):
    with pytest.raises(TypeError, match="save t.cpu()"):
        pickle.dumps(torch.ones(2, device=gpu))


@pytest.mark.parametrize("make", [
    pytest.param(lambda g: torch.zeros(2, dtype=torch.float64, device=g), id="create"),
    pytest.param(lambda g: torch.ones(2, device=g).double(), id="convert"),
    pytest.param(lambda g: torch.from_numpy(np.ones(2)).to(g), id="move_float64"),
])
def test_float64_is_refused_as_on_mps(gpu, make):
    with pytest.raises(TypeError, match="float64"):
        make(gpu)


def test_float64_refusal_can_be_switched_off():
    with PretendGPU(refuse_float64=False):
        x = torch.ones(2, device=PRETEND_DEVICE).double()
    assert is_pretend(x) and x.dtype == torch.float64


def test_pretend_tensors_keep_working_after_the_mode():
    with PretendGPU():
        x = torch.arange(3.0, device=PRETEND_DEVICE)
    y = x * 2
    assert is_pretend(y) and y.cpu().tolist() == [0.0, 2.0, 4.0]
    with pytest.raises(RuntimeError, match=MIX):
        y + torch.ones(3)


@pytest.mark.parametrize("devices", [joyvasa.devices, PACK_DEVICES], ids=["joyvasa", "pack"])
def test_pretend_cuda_makes_cuda_the_pretend_device(monkeypatch, devices):
    pretend_cuda(monkeypatch)
    assert devices.resolve_device("cuda") == PRETEND_DEVICE
    assert devices.resolve_device("auto") == PRETEND_DEVICE
    assert devices.resolve_device("cpu") == torch.device("cpu")
    assert devices.resolve_dtype("auto", devices.resolve_device("auto")) == torch.bfloat16
    assert devices.resolve_dtype("auto", torch.device("cpu")) == torch.float32


def test_pretend_cuda_is_undone_with_monkeypatch():
    is_available, torch_device = torch.cuda.is_available, joyvasa.devices.torch_device
    with pytest.MonkeyPatch.context() as mp:
        pretend_cuda(mp)
        assert torch.cuda.is_available() and joyvasa.devices.torch_device is not torch_device
    assert torch.cuda.is_available is is_available and joyvasa.devices.torch_device is torch_device
    assert joyvasa.devices.torch_device("cuda") == torch.device("cuda")


def test_on_pretend_gpu_without_monkeypatch_lasts_for_the_block():
    with on_pretend_gpu() as dev:
        x = torch.ones(2).to(joyvasa.devices.resolve_device("cuda"))
        assert dev == PRETEND_DEVICE and is_pretend(x)
    assert joyvasa.devices.torch_device("cuda") == torch.device("cuda")


def test_pretend_gpu_fixture(pretend_gpu):
    device = joyvasa.devices.resolve_device("auto")
    m = module(nn.Linear, 3, 2).to(device)
    assert device == pretend_gpu and is_pretend(m(torch.ones(1, 3, device=device)))


def test_indexing_with_python_lists_reads_and_writes(monkeypatch):
    x = torch.arange(12.0).reshape(2, 3, 2)
    y = -torch.arange(8.0).reshape(2, 2, 2) - 1
    expected = x.clone()
    expected[:, [0, 2]] = y
    with on_pretend_gpu(monkeypatch) as device:
        a = x.to(device)
        a[:, [0, 2]] = y.to(device)
        read = a[:, [2, 0]].cpu()
        written = a.cpu()
    assert torch.equal(written, expected)
    assert torch.equal(read, expected[:, [2, 0]])
