"""`ground` against an independent reference (per image, per prompt, plain autograd), batch invariance, hygiene, bad input.

The references below share no code with groundsup.grounding: they run the open_clip model's own forward (ResNet) or a
from-scratch ViT forward, one image and one prompt at a time, and take gradients with plain autograd."""
import math, time
import pytest, torch
import torch.nn.functional as F

from groundsup.grounding import load_clip, ground

TOL = 1e-4  # max abs difference on normalized maps


def _minmax(m):
    lo, hi = m.min(), m.max()
    return torch.zeros_like(m) if hi - lo <= 1e-12 else (m - lo) / (hi - lo)


_TEXT = {}


def _unit_text(model, tokenizer, prompt):
    key = (id(model), prompt)
    if key not in _TEXT:
        with torch.no_grad():
            t = model.encode_text(tokenizer([prompt]))[0]
        _TEXT[key] = t / t.norm()
    return _TEXT[key]


def ref_gradcam(clip, img, prompt, layer='layer4'):
    "GALS's GradCAM, straightforwardly: hook the layer, full forward of one image, score <f(x), t/|t|>, autograd."
    model = clip.model
    t = _unit_text(model, clip.tokenizer, prompt)
    module = dict(model.visual.named_modules())[layer]
    acts = []
    h = module.register_forward_hook(lambda m, i, o: acts.append(o))
    try:
        f = model.encode_image(img[None])[0]  # unnormalized image embedding
    finally:
        h.remove()
    s = (f * t).sum()
    A = acts[0]
    g, = torch.autograd.grad(s, A)
    w = g[0].mean(dim=(1, 2))
    cam = torch.relu((w[:, None, None] * A[0]).sum(0))
    return _minmax(cam.detach())


def ref_vit_attn(visual, img):
    "From-scratch ViT forward (one image) returning the unnormalized embedding and every block's attention probs."
    x = visual.conv1(img[None])
    gh, gw = x.shape[-2:]
    x = x.flatten(2).transpose(1, 2)
    x = torch.cat([visual.class_embedding.reshape(1, 1, -1), x], dim=1) + visual.positional_embedding
    x = visual.ln_pre(x)
    probs = []
    for blk in visual.transformer.resblocks:
        D = x.shape[-1]
        H = blk.attn.num_heads
        h = blk.ln_1(x)[0]  # L x D
        W, b = blk.attn.in_proj_weight, blk.attn.in_proj_bias
        q, k, v = h @ W[:D].T + b[:D], h @ W[D:2 * D].T + b[D:2 * D], h @ W[2 * D:].T + b[2 * D:]
        outs, ps = [], []
        for i in range(H):
            sl = slice(i * D // H, (i + 1) * D // H)
            a = torch.softmax(q[:, sl] @ k[:, sl].T / math.sqrt(D // H), dim=-1)
            ps.append(a)
            outs.append(a @ v[:, sl])
        probs.append(ps)  # H tensors L x L (each used by the forward, so autograd can differentiate them)
        o = torch.cat(outs, dim=-1) @ blk.attn.out_proj.weight.T + blk.attn.out_proj.bias
        x = x + o[None]
        x = x + blk.mlp(blk.ln_2(x))
    f = visual.ln_post(x[:, 0]) @ visual.proj
    return f[0], probs, (gh, gw)


def ref_relevance(clip, img, prompt, start_layer=0):
    "Chefer et al.'s relevance, straightforwardly: R = I; R += mean_h((dlogit/dA * A)^+) @ R per block; map = R[0, 1:]."
    model = clip.model
    t = _unit_text(model, clip.tokenizer, prompt)
    f, probs, (gh, gw) = ref_vit_attn(model.visual, img)
    logit = model.logit_scale.exp() * (f / f.norm() * t).sum()
    grads = torch.autograd.grad(logit, [a for ps in probs for a in ps])
    H = len(probs[0])
    grads = [torch.stack(grads[i * H:(i + 1) * H]) for i in range(len(probs))]
    probs = [torch.stack(ps) for ps in probs]
    n = len(probs)
    start = start_layer % n
    L = probs[0].shape[-1]
    R = torch.eye(L)
    for i in range(start, n):
        cam = (grads[i] * probs[i]).clamp(min=0).mean(dim=0)
        R = R + cam @ R
    return _minmax(R[0, 1:].reshape(gh, gw).detach())


def _randomize_bn(model, seed=0):
    "open_clip zero-inits the last BN of every residual branch: give them small random scales so all paths matter."
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in model.visual.named_parameters():
            if n.endswith('bn3.weight'): p.copy_(torch.rand(p.shape, generator=g) * 0.2)


@pytest.fixture(scope='module')
def rn50():
    torch.manual_seed(0)
    clip = load_clip('RN50', device='cpu')
    _randomize_bn(clip.model)
    return clip


@pytest.fixture(scope='module')
def vitb32():
    torch.manual_seed(1)
    return load_clip('ViT-B-32', device='cpu')


@pytest.fixture(scope='module')
def vitb16():
    torch.manual_seed(2)  # a non-square, non-default input: an 8 x 6 patch grid
    return load_clip('ViT-B-16', device='cpu', force_image_size=(128, 96))


PROMPTS = ['a photo of a bird', 'water and trees in the background']


def _images(clip, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    H, W = clip.image_size
    return torch.randn(n, 3, H, W, generator=g)


def _check_close(maps, refs):
    assert maps.shape == refs.shape, (maps.shape, refs.shape)
    assert maps.dtype == torch.float32
    err = (maps - refs).abs().max().item()
    assert err <= TOL, f"max abs diff {err:.2e} > {TOL}"
    assert refs.amax() > 0.99  # the reference maps are not degenerate


def test_gradcam_matches_reference(rn50):
    x = _images(rn50, 2)
    maps = ground(rn50, x, PROMPTS)  # auto -> gradcam at layer4
    refs = torch.stack([torch.stack([ref_gradcam(rn50, x[b], p) for p in PROMPTS]) for b in range(len(x))])
    assert maps.shape == (2, 2, 7, 7)
    _check_close(maps, refs)


@pytest.mark.slow
def test_gradcam_matches_reference_other_layer(rn50):
    x = _images(rn50, 2, seed=1)
    maps = ground(rn50, x, PROMPTS, method='gradcam', layer='visual.layer3')
    refs = torch.stack([torch.stack([ref_gradcam(rn50, x[b], p, 'layer3') for p in PROMPTS]) for b in range(len(x))])
    assert maps.shape == (2, 2, 14, 14)
    _check_close(maps, refs)


@pytest.mark.parametrize('start_layer', [0, -1])
def test_relevance_matches_reference_vitb32(vitb32, start_layer):
    x = _images(vitb32, 2)
    maps = ground(vitb32, x, PROMPTS, start_layer=start_layer)  # auto -> relevance
    refs = torch.stack([torch.stack([ref_relevance(vitb32, x[b], p, start_layer) for p in PROMPTS]) for b in range(len(x))])
    assert maps.shape == (2, 2, 7, 7)
    _check_close(maps, refs)


@pytest.mark.parametrize('start_layer', [0, -1])
def test_relevance_matches_reference_vitb16_other_grid(vitb16, start_layer):
    x = _images(vitb16, 2, seed=3)
    per_image = [PROMPTS, PROMPTS[::-1]]  # per-image prompt lists
    maps = ground(vitb16, x, per_image, method='relevance', start_layer=start_layer)
    refs = torch.stack([torch.stack([ref_relevance(vitb16, x[b], p, start_layer) for p in per_image[b]]) for b in range(len(x))])
    assert maps.shape == (2, 2, 8, 6)
    _check_close(maps, refs)


def test_reference_vit_forward_is_the_models(vitb32):
    "Sanity check of the reference itself: its from-scratch forward gives the model's image embedding."
    x = _images(vitb32, 1)
    f, _, _ = ref_vit_attn(vitb32.model.visual, x[0])
    with torch.no_grad():
        torch.testing.assert_close(f.detach(), vitb32.model.encode_image(x)[0], atol=1e-4, rtol=1e-4)


def test_batch_invariance(rn50, vitb32):
    for clip in (rn50, vitb32):
        x = _images(clip, 2, seed=5)
        batch = ground(clip, x, PROMPTS)
        alone = torch.cat([ground(clip, x[i:i + 1], PROMPTS) for i in range(len(x))])
        assert (batch - alone).abs().max() <= 1e-5


def test_size_upsamples_and_renormalizes(vitb32):
    x = _images(vitb32, 1)
    small = ground(vitb32, x, PROMPTS[:1], start_layer=-1)
    big = ground(vitb32, x, PROMPTS[:1], start_layer=-1, size=(32, 40))
    assert big.shape == (1, 1, 32, 40)
    up = F.interpolate(small, size=(32, 40), mode='bilinear', align_corners=False)
    torch.testing.assert_close(big, _minmax(up), atol=1e-5, rtol=0)


def _snapshot(model):
    return dict(
        training={n: m.training for n, m in model.named_modules()},
        requires_grad={n: p.requires_grad for n, p in model.named_parameters()},
        hooks={n: (len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks),
                   len(getattr(m, '_backward_pre_hooks', {}))) for n, m in model.named_modules()},
    )


def test_hygiene(rn50, vitb32):
    for clip, kw in ((rn50, dict(layer='layer3')), (vitb32, dict(start_layer=-2))):
        model = clip.model
        model.train()
        model.visual.eval()
        list(model.visual.children())[1].train()  # a mixed train/eval state
        params = list(model.parameters())
        for p in params[::3]: p.requires_grad_(False)  # partly frozen
        try:
            before = _snapshot(model)
            ground(clip, _images(clip, 2), PROMPTS, **kw)
            after = _snapshot(model)
            assert after == before
            assert all(p.grad is None for p in params)
            assert all(len(m._forward_hooks) == 0 for m in model.modules())
        finally:
            model.eval()
            for p in params: p.requires_grad_(True)


def test_frozen_model_grounds_the_same(vitb32):
    x = _images(vitb32, 1)
    a = ground(vitb32, x, PROMPTS)
    for p in vitb32.model.parameters(): p.requires_grad_(False)
    try:
        with torch.no_grad():  # also from inside no_grad / inference code
            b = ground(vitb32, x, PROMPTS)
    finally:
        for p in vitb32.model.parameters(): p.requires_grad_(True)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_bad_input(rn50, vitb32):
    x = _images(rn50, 1)
    with pytest.raises(ValueError, match='non-empty'): ground(rn50, x, [])
    with pytest.raises(ValueError, match='empty'): ground(rn50, x, [[]])
    with pytest.raises(ValueError, match='empty prompt'): ground(rn50, x, [''])
    with pytest.raises(TypeError, match='list of strings'): ground(rn50, x, 'a bird')
    with pytest.raises(ValueError, match='longer than the model'): ground(rn50, x, ['bird ' * 80])
    with pytest.raises(ValueError, match="layer='layer5'.*layer4"): ground(rn50, x, PROMPTS, layer='layer5')
    with pytest.raises(ValueError, match="B x C x h x w"): ground(rn50, x, PROMPTS, layer='attnpool')
    with pytest.raises(ValueError, match=r'B x 3 x 224 x 224'): ground(rn50, torch.randn(1, 3, 100, 100), PROMPTS)
    with pytest.raises(ValueError, match=r'B x 3 x 224 x 224'): ground(rn50, torch.randn(3, 224, 224), PROMPTS)
    with pytest.raises(ValueError, match='2 per-image lists for 1 images'): ground(rn50, x, [PROMPTS, PROMPTS])
    with pytest.raises(ValueError, match="method='relevance'"): ground(rn50, x, PROMPTS, method='relevance')
    with pytest.raises(ValueError, match="method='gradcam2'"): ground(rn50, x, PROMPTS, method='gradcam2')
    with pytest.raises(ValueError, match='start_layer=12'): ground(vitb32, _images(vitb32, 1), PROMPTS, start_layer=12)


def test_wrong_layer_fails_before_any_work(rn50):
    "A bad layer name must fail at once, not after a forward pass."
    x = _images(rn50, 8)
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match='valid names'): ground(rn50, x, PROMPTS, layer='layer4.9')
    assert time.perf_counter() - t0 < 0.5


BF16_MAX, BF16_MEAN = 0.25, 0.03  # stated tolerance of bf16 autocast vs fp32, on normalized maps


def _check_bf16(clip, n=1):
    x = _images(clip, n, seed=7)
    ref = ground(clip, x, PROMPTS[:1])
    with torch.autocast('cpu', dtype=torch.bfloat16):
        low = ground(clip, x, PROMPTS[:1])
    assert low.dtype == torch.float32 and low.shape == ref.shape
    d = (low - ref).abs()
    assert d.max() <= BF16_MAX and d.mean() <= BF16_MEAN, (clip.name, d.max().item(), d.mean().item())
    assert not torch.equal(low, ref)  # autocast really ran in bf16


def test_bf16_autocast_close_to_fp32_vit(vitb32):
    _check_bf16(vitb32)


@pytest.mark.slow
def test_bf16_autocast_close_to_fp32_resnet(rn50):
    _check_bf16(rn50, n=2)


def test_load_clip_offline_tag_fails_fast():
    import socket
    try:
        socket.create_connection(('huggingface.co', 443), timeout=2).close()
        pytest.skip('huggingface.co is reachable here: the offline path cannot be exercised')
    except OSError: pass
    t0 = time.perf_counter()
    with pytest.raises(RuntimeError, match="pass its path"):
        load_clip('RN50', pretrained='openai', device='cpu', timeout=2)
    assert time.perf_counter() - t0 < 10
