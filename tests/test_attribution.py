"A table over every attribution method: shape, range, determinism, model hygiene, differentiability, CPU vs CUDA."
import pytest, torch
from torchvision.models.resnet import BasicBlock, ResNet
from captum.attr import LayerGradCam

from groundsup.attribution import METHODS, attribute
from groundsup.core import normalize_maps, resize_maps

FAST = {'integrated_gradients': {'n_steps': 4}, 'occlusion': {'window': 16, 'stride': 16}}  # keep CPU time low

def _net(seed=0, classes=5):
    "A small torchvision ResNet (one BasicBlock per stage, same module names as resnet18) to keep CPU time low."
    torch.manual_seed(seed)
    return ResNet(BasicBlock, [1, 1, 1, 1], num_classes=classes).eval()

def _x(b=2, size=64, seed=1):
    return torch.randn(b, 3, size, size, generator=torch.Generator().manual_seed(seed))

@pytest.fixture(scope='module')
def net(): return _net()

def _hooks(model):
    return sum(len(d) for m in model.modules() for d in (m._forward_hooks, m._forward_pre_hooks, m._backward_hooks,
                                                           getattr(m, '_backward_pre_hooks', {})))

@pytest.mark.parametrize('method', sorted(METHODS))
def test_shape_range_dtype(net, method):
    x = _x()
    a = attribute(net, x, [1, 3], method, **FAST.get(method, {}))
    expect = (2, 1, 2, 2) if METHODS[method].uses_layer and method == 'gradcam' else (2, 1, 64, 64)
    assert tuple(a.shape) == expect and a.dtype == torch.float32
    assert a.min() >= 0 and a.max() <= 1 and torch.isfinite(a).all()
    # each map spans [0, 1] unless it is all zero (no evidence)
    mx = a.amax((2, 3))
    assert ((mx - 1).abs() < 1e-6).logical_or(mx == 0).all()
    assert not a.requires_grad
    b = attribute(net, x, [1, 3], method, size=(40, 48), **FAST.get(method, {}))
    assert tuple(b.shape) == (2, 1, 40, 48) and b.min() >= 0 and b.max() <= 1

@pytest.mark.parametrize('method', sorted(METHODS))
def test_deterministic(net, method):
    x = _x()
    a1 = attribute(net, x, 'pred', method, **FAST.get(method, {}))
    a2 = attribute(net, x, 'pred', method, **FAST.get(method, {}))
    assert torch.equal(a1, a2)

@pytest.mark.parametrize('method', sorted(METHODS))
@pytest.mark.parametrize('mode', ['eval', 'train'])
def test_leaves_model_and_input_as_found(method, mode):
    net = _net()
    net.train(mode == 'train')
    net.layer2.requires_grad_(False)
    net.fc.eval()  # a mixed-mode model must stay mixed
    state = {k: v.clone() for k, v in net.state_dict().items()}
    modes = [m.training for m in net.modules()]
    flags = [p.requires_grad for p in net.parameters()]
    hooks = _hooks(net)
    x = _x()
    x_before = x.clone()
    attribute(net, x, 2, method, **FAST.get(method, {}))
    assert [m.training for m in net.modules()] == modes
    assert [p.requires_grad for p in net.parameters()] == flags
    assert _hooks(net) == hooks == 0
    assert all(p.grad is None for p in net.parameters())
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())  # weights and BN statistics
    assert torch.equal(x, x_before) and not x.requires_grad and x.grad is None

def test_input_requiring_grad_keeps_flag_and_gets_no_grad(net):
    x = _x().requires_grad_(True)
    attribute(net, x, 0, 'saliency')
    assert x.requires_grad and x.grad is None

def test_gradcam_equals_captum_layergradcam_minmax(net):
    x, t = _x(3), torch.tensor([0, 2, 4])
    for layer, mod in [(None, net.layer4), ('layer3', net.layer3), ('layer2.0.conv1', net.layer2[0].conv1)]:
        plain = LayerGradCam(net, mod).attribute(x, target=t, relu_attributions=True)
        torch.testing.assert_close(attribute(net, x, t, 'gradcam', layer=layer), normalize_maps(plain), atol=1e-6, rtol=0)
        torch.testing.assert_close(attribute(net, x, t, 'gradcam', layer=layer, size=64),
                                   normalize_maps(resize_maps(plain, 64)), atol=1e-6, rtol=0)

def test_saliency_is_abs_input_gradient_summed_over_channels(net):
    x, t = _x(), torch.tensor([1, 2])
    xx = x.clone().requires_grad_(True)
    g, = torch.autograd.grad(net(xx).gather(1, t[:, None]).sum(), xx)
    torch.testing.assert_close(attribute(net, x, t, 'saliency', normalize=False), g.abs().sum(1, keepdim=True))
    torch.testing.assert_close(attribute(net, x, t, 'input_x_gradient', normalize=False), (g * x).abs().sum(1, keepdim=True))

@pytest.mark.parametrize('method', [m for m in sorted(METHODS) if METHODS[m].differentiable])
def test_create_graph_trains_the_model(method):
    net = _net()
    x = _x()
    kw = dict(FAST.get(method, {}), **({'layer': 'layer3'} if method == 'gradcam' else {}))  # 4x4 maps: not constant
    a = attribute(net, x, [0, 1], method, create_graph=True, **kw)
    assert a.requires_grad and (a.amax((2, 3)) > 0).all()
    torch.testing.assert_close(a.detach(), attribute(net, x, [0, 1], method, **kw), atol=1e-5, rtol=1e-5)
    w = torch.rand(a.shape, generator=torch.Generator().manual_seed(0))
    (w * a).sum().backward()
    # gradients reach the weights of the explained stage and of the stages before it
    for p in [net.layer1[0].conv1.weight, net.layer3[0].conv1.weight]:
        assert p.grad is not None and p.grad.abs().sum() > 0

def test_create_graph_gradients_match_plain_autograd_gradcam():
    net = _net()
    x, t = _x(), torch.tensor([3, 1])
    acts = []
    h = net.layer4.register_forward_hook(lambda m, i, o: acts.append(o))
    logits = net(x); h.remove()
    dA, = torch.autograd.grad(logits.gather(1, t[:, None]).sum(), acts[0], create_graph=True)
    ref = normalize_maps(torch.relu((dA.mean((2, 3), keepdim=True) * acts[0]).sum(1, keepdim=True)))
    ours = attribute(net, x, t, 'gradcam', create_graph=True)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
    w = torch.rand(ours.shape, generator=torch.Generator().manual_seed(3))
    params = list(net.layer3.parameters()) + list(net.layer4.parameters())
    g1 = torch.autograd.grad((w * ours).sum(), params)
    g2 = torch.autograd.grad((w * ref).sum(), params)
    for a, b in zip(g1, g2): torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)

@pytest.mark.parametrize('method', [m for m in sorted(METHODS) if not METHODS[m].differentiable])
def test_create_graph_refused_for_non_differentiable(net, method):
    with pytest.raises(ValueError, match=f"method='{method}' is not differentiable"):
        attribute(net, _x(), 0, method, create_graph=True)

def test_targets(net):
    x = _x(3)
    with torch.no_grad(): pred = net(x).argmax(1)
    ref = attribute(net, x, pred, 'saliency')
    assert torch.equal(attribute(net, x, 'pred', 'saliency'), ref)
    assert torch.equal(attribute(net, x, pred.tolist(), 'saliency'), ref)
    assert torch.equal(attribute(net, x, lambda z: z.argmax(1), 'saliency'), ref)
    torch.testing.assert_close(attribute(net, x, lambda z: z.gather(1, pred[:, None])[:, 0], 'saliency'), ref)
    assert torch.equal(attribute(net, x, 4, 'gradcam'), attribute(net, x, torch.tensor([4, 4, 4]), 'gradcam'))
    for bad, msg in [([0, 1], 'batch of 3'), ('max', "target='max'"), (None, 'target=None'), (True, 'target=True'),
                     (lambda z: z, 'one score per image')]:
        with pytest.raises((ValueError, TypeError), match=msg): attribute(net, x, bad, 'saliency')

def test_layer_errors_list_candidates(net):
    with pytest.raises(ValueError, match=r"layer='layer44'.*top-level modules: \['conv1'"):
        attribute(net, _x(), 0, layer='layer44')
    with pytest.raises(ValueError, match='takes no layer'):
        attribute(net, _x(), 0, 'saliency', layer='layer4')

def test_double_input_gives_float32():
    a = attribute(_net().double(), _x().double(), 0, 'gradcam')
    assert a.dtype == torch.float32

@pytest.mark.gpu
@pytest.mark.parametrize('method', sorted(METHODS))
def test_cpu_matches_cuda(method):
    net, x = _net(), _x()
    cpu = attribute(net, x, [0, 2], method, **FAST.get(method, {}))
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False  # compare float32 with float32
    try: gpu = attribute(_net().cuda(), x.cuda(), [0, 2], method, **FAST.get(method, {}))
    finally: torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
    assert gpu.device.type == 'cuda' and gpu.shape == cpu.shape
    # different kernels sum in a different order: min-max normalized maps agree to about 1e-3
    torch.testing.assert_close(gpu.cpu(), cpu, atol=2e-3, rtol=0)
