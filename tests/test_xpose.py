"""Fast unit tests of the X-Pose port on tiny configurations (no kit, no real weights)."""
from __future__ import annotations

import argparse
import math

import numpy as np
import pytest
import torch

from joyvasa.checkpoint import CheckpointError
from joyvasa.face import crop_image
from joyvasa.face.xpose import (
    ANIMAL_FACE_9,
    NoAnimalFoundError,
    Prompt,
    Trace,
    XPose,
    XPoseConfig,
    animal_face_prompt,
    detect_animal_keypoints,
    load_xpose,
)
from joyvasa.face.xpose.blocks import MultiheadAttention
from joyvasa.face.xpose.decoder import DecoderConfig, group_attention_mask
from joyvasa.face.xpose.deformable_attention import MSDeformAttn, sample_multi_scale
from joyvasa.face.xpose.encoder import EncoderConfig
from joyvasa.face.xpose.fusion import BiMultiHeadAttention
from joyvasa.face.xpose.loading import tied_groups
from joyvasa.face.xpose.postprocess import nms
from joyvasa.face.xpose.preprocess import resized_size
from joyvasa.face.xpose.swin import (
    SwinConfig,
    SwinTransformer,
    relative_position_index,
    shifted_window_mask,
    window_partition,
    window_reverse,
)
from joyvasa.face.xpose.transformer import TransformerConfig, encoder_proposals

TINY = XPoseConfig(
    swin=SwinConfig(embed_dim=8, depths=(2, 2, 2, 2), num_heads=(1, 1, 2, 2), window_size=3),
    transformer=TransformerConfig(
        d_model=32, num_queries=20,
        encoder=EncoderConfig(num_layers=1, d_model=32, num_heads=2, ffn_dim=64),
        decoder=DecoderConfig(num_layers=3, d_model=32, num_heads=2, ffn_dim=64, num_groups=4, num_keypoints=12,
                              num_hw_rows=5)),
    prompt_dim=16, text_len=6, num_groupnorm_groups=8, label_book_size=5, unused_pos_dim=8)


def tiny_model(seed: int = 0) -> XPose:
    torch.manual_seed(seed)
    return XPose(TINY).eval()


def tiny_prompt(n_instance: int = 1, n_keypoints: int = 9, seed: int = 1) -> Prompt:
    gen = torch.Generator().manual_seed(seed)
    return Prompt(torch.randn(n_instance, 16, generator=gen), torch.randn(n_keypoints, 16, generator=gen))


# --- deformable attention ------------------------------------------------------------------------------------

def naive_bilinear(value_map: torch.Tensor, x: float, y: float) -> torch.Tensor:
    """value_map (D, H, W); (x, y) in [0, 1] of the map, pixel centres at (i + 0.5) / size, zeros outside."""
    D, H, W = value_map.shape
    px, py = x * W - 0.5, y * H - 0.5
    x0, y0 = math.floor(px), math.floor(py)
    out = torch.zeros(D, dtype=torch.float64)
    for yi, wy in ((y0, 1 - (py - y0)), (y0 + 1, py - y0)):
        for xi, wx in ((x0, 1 - (px - x0)), (x0 + 1, px - x0)):
            if 0 <= yi < H and 0 <= xi < W:
                out += wx * wy * value_map[:, yi, xi].double()
    return out


def naive_deformable(value, shapes, locations, weights) -> torch.Tensor:
    B, _, M, D = value.shape
    _, Q, _, L, P, _ = locations.shape
    starts = np.cumsum([0] + [h * w for h, w in shapes])
    out = torch.zeros(B, Q, M * D, dtype=torch.float64)
    for b in range(B):
        for q in range(Q):
            for m in range(M):
                for lvl, (h, w) in enumerate(shapes):
                    vmap = value[b, starts[lvl]:starts[lvl + 1], m].T.reshape(D, h, w)
                    for p in range(P):
                        x, y = locations[b, q, m, lvl, p].tolist()
                        out[b, q, m * D:(m + 1) * D] += weights[b, q, m, lvl, p] * naive_bilinear(vmap, x, y)
    return out


def test_deformable_sampling_matches_naive_loop():
    """grid_sample-based sampling = explicit bilinear interpolation with zeros outside each level."""
    gen = torch.Generator().manual_seed(0)
    shapes = [(4, 5), (2, 3)]
    value = torch.randn(2, sum(h * w for h, w in shapes), 2, 3, generator=gen)
    locations = torch.rand(2, 3, 2, 2, 2, 2, generator=gen) * 1.4 - 0.2  # some points outside the map
    weights = torch.rand(2, 3, 2, 2, 2, generator=gen)
    got = sample_multi_scale(value, shapes, locations, weights)
    torch.testing.assert_close(got.double(), naive_deformable(value, shapes, locations, weights), atol=1e-5, rtol=0)


@pytest.mark.parametrize("ref_dim", [2, 4])
def test_msdeformattn_offsets(ref_dim):
    """Point references move by offset / level size; box references by offset / n_points * box size / 2."""
    torch.manual_seed(0)
    shapes = [(4, 6), (2, 3)]
    attn = MSDeformAttn(d_model=8, n_levels=2, n_heads=2, n_points=3).eval()
    query = torch.randn(1, 5, 8)
    value_in = torch.randn(1, sum(h * w for h, w in shapes), 8)
    ref = torch.rand(1, 5, 2, ref_dim)
    with torch.no_grad():
        got = attn(query, ref, value_in, shapes)
        offsets = attn.sampling_offsets(query).view(1, 5, 2, 2, 3, 2)
        weights = attn.attention_weights(query).view(1, 5, 2, 6).softmax(-1).view(1, 5, 2, 2, 3)
        r = ref[:, :, None, :, None, :]
        if ref_dim == 2:
            locations = r + offsets / torch.tensor([[6.0, 4.0], [3.0, 2.0]])[None, None, None, :, None]
        else:
            locations = r[..., :2] + offsets / 3 * r[..., 2:] * 0.5
        value = attn.value_proj(value_in).view(1, -1, 2, 4)
        expected = attn.output_proj(naive_deformable(value, shapes, locations, weights).float())
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


# --- Swin --------------------------------------------------------------------------------------------------

def test_window_partition_round_trip():
    x = torch.randn(2, 6, 9, 4)
    windows = window_partition(x, 3)
    assert windows.shape == (2 * 2 * 3, 3, 3, 4)
    torch.testing.assert_close(windows[1], x[0, 0:3, 3:6])  # second window of the first image: row 0, column 1
    torch.testing.assert_close(window_reverse(windows, 3, 6, 9), x)


def test_relative_position_index_definition():
    w = 3
    idx = relative_position_index(w)
    coords = [(i // w, i % w) for i in range(w * w)]
    expected = [[(yi - yj + w - 1) * (2 * w - 1) + (xi - xj + w - 1) for (yj, xj) in coords] for (yi, xi) in coords]
    assert idx.dtype == torch.int64
    assert idx.tolist() == expected


def test_shifted_window_mask_separates_regions():
    """-100 exactly between tokens of one shifted window that came from different regions of the map."""
    Hp, Wp, w, s = 6, 9, 3, 1
    region = np.zeros((Hp, Wp), dtype=int)
    rows = np.digitize(np.arange(Hp), [Hp - w, Hp - s])
    cols = np.digitize(np.arange(Wp), [Wp - w, Wp - s])
    region = rows[:, None] * 3 + cols[None, :]
    labels = window_partition(torch.from_numpy(region)[None, :, :, None].float(), w).view(-1, w * w)
    mask = shifted_window_mask(Hp, Wp, w, s)
    assert mask.shape == ((Hp // w) * (Wp // w), w * w, w * w)
    same = labels[:, :, None] == labels[:, None, :]
    assert torch.equal(mask == 0, same) and torch.equal(mask == -100, ~same)
    assert (mask[:-1, :, :].reshape(-1) == 0).any() and (mask[-1] == -100).any()


def test_swin_shapes_with_padding():
    """Odd sizes: patch padding, window padding inside blocks and padding before merging give ceil'd maps."""
    swin = SwinTransformer(SwinConfig(embed_dim=8, depths=(2, 2, 2, 2), num_heads=(1, 1, 2, 2), window_size=3))
    with torch.no_grad():
        outs = swin(torch.randn(1, 3, 37, 53))  # patches 10 x 14 -> 5 x 7 -> 3 x 4 -> 2 x 2
    assert [tuple(o.shape) for o in outs] == [(1, 16, 5, 7), (1, 32, 3, 4), (1, 64, 2, 2)]
    assert swin.out_channels == [16, 32, 64]


# --- transformer pieces --------------------------------------------------------------------------------------

def test_grouped_self_attention_equals_block_masked_attention():
    """Attention inside groups = attention over all queries with the original's (Q, Q) block mask."""
    torch.manual_seed(0)
    attn = MultiheadAttention(8, 2).eval()
    valid = torch.tensor([1.0, 1.0, 0.0, 0.0])
    inner = group_attention_mask(valid)  # (5, 5)
    G, S = 3, inner.shape[0]
    full = torch.ones(G * S, G * S, dtype=torch.bool)
    for g in range(G):
        full[g * S:(g + 1) * S, g * S:(g + 1) * S] = inner
    q, v = torch.randn(1, G * S, 8), torch.randn(1, G * S, 8)
    with torch.no_grad():
        grouped = attn(q.view(G, S, 8), q.view(G, S, 8), v.view(G, S, 8), blocked=inner).view(1, G * S, 8)
        reference = attn(q, q, v, blocked=full)
    torch.testing.assert_close(grouped, reference, atol=1e-6, rtol=0)


def test_fusion_drops_only_tokens_padded_everywhere():
    """Image->text attention over the used text tokens = softmax over all tokens with -inf on padded ones."""
    torch.manual_seed(0)
    attn = BiMultiHeadAttention(v_dim=8, l_dim=8, embed_dim=16, num_heads=2).eval()
    v, l = torch.randn(2, 7, 8), torch.randn(2, 5, 8)
    padding = torch.tensor([[False, True, True, True, True], [False, False, True, True, True]])
    with torch.no_grad():
        delta_v, _ = attn(v, l, padding)
        q = attn._heads(attn.v_proj(v) * attn.scale)
        logits = q @ attn._heads(attn.l_proj(l)).transpose(1, 2)
        blocked = padding.repeat_interleave(2, 0)[:, None, :]
        weights = (logits - logits.max()).masked_fill(blocked, float("-inf")).softmax(-1)
        expected = attn.out_v_proj(attn._merge(weights @ attn._heads(attn.values_l_proj(l)), 2))
    torch.testing.assert_close(delta_v, expected, atol=1e-6, rtol=0)


def test_group_attention_mask_layout():
    blocked = group_attention_mask(torch.tensor([1.0, 1.0, 0.0]))
    member = [True, True, True, False]  # box, 2 real keypoints, 1 padding keypoint
    assert blocked.tolist() == [[a != b for b in member] for a in member]


def test_encoder_proposals_validity():
    """A token's box is valid iff all of (cx, cy, w, h) lie in (0.01, 0.99); invalid boxes are 1 after sigmoid."""
    shapes = [(10, 120), (3, 3)]
    unsig, valid = encoder_proposals(shapes, size=0.05)
    boxes = torch.cat([torch.cat((
        torch.stack(torch.meshgrid((torch.arange(h) + 0.5) / h, (torch.arange(w) + 0.5) / w, indexing="ij")[::-1],
                    -1).reshape(-1, 2),
        torch.full((h * w, 2), 0.05 * 2 ** lvl)), -1) for lvl, (h, w) in enumerate(shapes)])
    rule = ((boxes > 0.01) & (boxes < 0.99)).all(-1)
    assert torch.equal(valid[0, :, 0], rule) and not rule.all() and rule.any()
    torch.testing.assert_close(unsig.sigmoid()[0][rule], boxes[rule])
    assert torch.all(unsig.sigmoid()[0][~rule] == 1.0)


# --- model, loading, detection -------------------------------------------------------------------------------

def test_tiny_forward_shapes_and_trace():
    model = tiny_model()
    trace = Trace()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 96), tiny_prompt(), trace=trace)
    G, K, N = 4, 12, 6
    assert out.logits.shape == (1, G, N) and out.boxes.shape == (1, G, 4) and out.keypoints.shape == (1, G, 3 * K)
    assert torch.isinf(out.logits[..., 1:]).all() and torch.isfinite(out.logits[..., 0]).all()
    assert torch.allclose(out.keypoints[..., 2 * K:], torch.sigmoid(torch.tensor(1.0)))
    assert trace.arrays["enc_topk_index"].shape == (1, 20)
    assert trace.arrays["dec_ref3"].shape == (1, G * (K + 1), 4)
    assert set(trace.arrays) >= {"backbone_feat0", "enc_token_logits", "dec1_top50_index", "dec_hs2_box"}


def test_trace_force_replaces_the_selection():
    model = tiny_model()
    image, prompt = torch.randn(1, 3, 64, 96), tiny_prompt()
    natural, forced = Trace(), Trace()
    with torch.no_grad():
        model(image, prompt, trace=natural)
        forced.force["enc_topk_index"] = natural.arrays["enc_topk_index"].flip(1)
        model(image, prompt, trace=forced)
    assert torch.equal(forced.arrays["enc_topk_index"], natural.arrays["enc_topk_index"])  # recorded as chosen
    torch.testing.assert_close(forced.arrays["enc_ref_boxes"], natural.arrays["enc_ref_boxes"].flip(1))


@pytest.fixture
def tiny_file(tmp_path):
    """A tiny model saved as a training checkpoint: DDP's 'module.' on every key, plus the training extras."""
    model = tiny_model(seed=3)
    state = {f"module.{k}": v.clone() for k, v in model.state_dict().items()}
    path = tmp_path / "xpose.pth"
    extras = {"epoch": 7, "args": argparse.Namespace(lr=1e-4, output_dir="logs"), "optimizer": {"state": {}}}
    torch.save({"model": state, **extras}, path)
    return model, state, path


def test_tied_keys_are_the_official_aliases():
    groups = tied_groups(XPose())
    assert len(groups) == 18 and sum(len(g) for g in groups) == 180  # 18 tensors under 180 names (162 aliases)
    box = next(g for g in groups if g[0] == "transformer.decoder.bbox_embed.0.layers.0.weight")
    assert "bbox_embed.5.layers.0.weight" in box and "transformer.decoder.bbox_embed.5.layers.0.weight" in box


def test_load_round_trip(tiny_file):
    model, _, path = tiny_file
    loaded = load_xpose(path, config=TINY)
    image, prompt = torch.randn(1, 3, 40, 56), tiny_prompt()
    with torch.no_grad():
        a, b = model(image, prompt), loaded(image, prompt)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, atol=0, rtol=0)


def test_load_missing_key_names_file_and_key(tiny_file, tmp_path):
    _, state, _ = tiny_file
    del state["module.label_enc.weight"]  # unused by the forward pass, still required
    path = tmp_path / "missing.pth"
    torch.save({"model": state}, path)
    with pytest.raises(CheckpointError, match=r"missing keys: label_enc\.weight") as err:
        load_xpose(path, config=TINY)
    assert str(path) in str(err.value)


def test_load_unexpected_key(tiny_file, tmp_path):
    _, state, _ = tiny_file
    state["module.transformer.extra.weight"] = torch.zeros(3)
    path = tmp_path / "unexpected.pth"
    torch.save({"model": state}, path)
    with pytest.raises(CheckpointError, match=r"unexpected keys: transformer\.extra\.weight"):
        load_xpose(path, config=TINY)


def test_load_rejects_inconsistent_tied_keys(tiny_file, tmp_path):
    _, state, _ = tiny_file
    state["module.bbox_embed.1.layers.0.bias"] = state["module.bbox_embed.1.layers.0.bias"] + 1
    path = tmp_path / "untied.pth"
    torch.save({"model": state}, path)
    with pytest.raises(CheckpointError, match=r"tied keys .* bbox_embed\.1\.layers\.0\.bias"):
        load_xpose(path, config=TINY)


def test_load_accepts_one_name_per_tied_tensor(tiny_file, tmp_path):
    """A re-save that kept one name per tied tensor loads; the aliases get its values."""
    model, state, _ = tiny_file
    aliases = {name for group in tied_groups(model) for name in group[1:]}
    kept = {k: v for k, v in state.items() if k[len("module."):] not in aliases}
    path = tmp_path / "deduplicated.pth"
    torch.save(kept, path)  # flat, no 'model' wrapper
    loaded = load_xpose(path, config=TINY)
    torch.testing.assert_close(loaded.bbox_embed[2].layers[2].weight,
                               model.transformer.decoder.bbox_embed[0].layers[2].weight)


def test_load_rejects_non_state_dict(tmp_path):
    path = tmp_path / "junk.pth"
    torch.save({"model": {"a": 1}}, path)
    with pytest.raises(CheckpointError, match="not an X-Pose checkpoint"):
        load_xpose(path, config=TINY)


def test_no_animal_raises_clear_error():
    image = np.full((48, 64, 3), 127, dtype=np.uint8)
    with pytest.raises(NoAnimalFoundError, match="No animal face found") as err:
        detect_animal_keypoints(tiny_model(), image, prompt=tiny_prompt(), min_score=1.0)
    assert isinstance(err.value, ValueError)


def test_detect_and_crop_shapes():
    image = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    found = detect_animal_keypoints(tiny_model(), image, prompt=tiny_prompt())
    assert found.points.shape == (len(ANIMAL_FACE_9), 2) and found.points.dtype == np.float64
    assert 0 < found.score < 1 and found.box.shape == (4,)
    crop = crop_image(image, found.points, dsize=64, scale=3.0)  # JoyVASA's animal framing
    assert crop.image.shape == (64, 64, 3) and crop.points.shape == (9, 2)


def test_bfloat16_runs_finite():
    """Reduced precision runs end to end (deformable sampling is done in float32, as the original does)."""
    model = tiny_model().to(torch.bfloat16)
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 96, dtype=torch.bfloat16), tiny_prompt())
    assert out.boxes.dtype == torch.bfloat16
    assert torch.isfinite(out.boxes).all() and torch.isfinite(out.keypoints).all()


def test_shipped_prompt():
    prompt = animal_face_prompt()
    assert prompt.instance.shape == (1, 512) and prompt.keypoints.shape == (len(ANIMAL_FACE_9), 512)
    assert prompt.instance.dtype == torch.float32 and torch.isfinite(prompt.keypoints).all()


def test_text_padding_limits():
    with pytest.raises(ValueError, match="keypoint embeddings"):
        tiny_model()(torch.randn(1, 3, 32, 32), tiny_prompt(n_keypoints=13))


# --- pre- and post-processing ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("size", "expected"), [
    ((450, 300), (1200, 800)),  # short side to 800, sizes truncated
    ((2000, 500), (1332, 333)),  # long side capped at 1333
    ((300, 800), (500, 1333)),
    ((1200, 800), (1200, 800)),  # already there
])
def test_resized_size(size, expected):
    assert resized_size(*size) == expected


def test_nms_iou_zero_suppresses_any_overlap():
    boxes = torch.tensor([[0, 0, 1, 1], [0.5, 0.5, 1.5, 1.5], [2, 2, 3, 3], [1, 1, 2, 2]], dtype=torch.float32)
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    assert nms(boxes, scores, 0.0).tolist() == [0, 2, 3]  # touching corners do not overlap
    assert nms(boxes, scores, 0.5).tolist() == [0, 1, 2, 3]
