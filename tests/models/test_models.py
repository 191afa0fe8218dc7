"""Model zoo: registry behaviour, forward shapes, parameter counts against known figures, init."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from sparsetime.models import available_models, build_model, model_options

ALL_MODELS = ["lenet300", "lenet5", "mlp", "resnet18", "resnet34", "resnet50", "vgg16", "wrn22_2"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small forwards are fastest single-threaded, and robust to a busy shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_registry_lists_every_model():
    assert available_models() == sorted(ALL_MODELS)


@pytest.mark.parametrize("name", ALL_MODELS)
@pytest.mark.parametrize("shape,classes", [((1, 28, 28), 10), ((3, 32, 32), 100)])
def test_forward_shape(name, shape, classes):
    torch.manual_seed(0)
    model = build_model(name, shape, classes).eval()
    with torch.no_grad():
        out = model(torch.randn(2, *shape))
    assert out.shape == (2, classes)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["vgg16", "resnet50", "wrn22_2", "lenet5"])
def test_conv_nets_accept_non_square_inputs(name):
    model = build_model(name, (2, 20, 24), 7).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 2, 20, 24)).shape == (1, 7)


def test_conv_nets_train_mode_backward():
    model = build_model("vgg16", (3, 16, 16), 5).train()
    loss = model(torch.randn(4, 3, 16, 16)).logsumexp(1).mean()
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_mlp_any_input_shape():
    assert build_model("lenet300", (5,), 3)(torch.randn(4, 5)).shape == (4, 3)
    assert build_model("mlp", (2, 3, 4), 6, hidden=[8])(torch.randn(4, 2, 3, 4)).shape == (4, 6)


# Parameter counts. Linear in->out has in*out + out parameters.
def test_lenet300_parameter_count():
    # 784*300+300 = 235,500; 300*100+100 = 30,100; 100*10+10 = 1,010 -> 266,610
    assert n_params(build_model("lenet300", (1, 28, 28), 10)) == 266_610


def test_mlp_parameter_counts():
    # default hidden (1000, 1000): 784*1000+1000 = 785,000; 1000*1000+1000 = 1,001,000;
    # 1000*10+10 = 10,010 -> 1,796,010
    assert n_params(build_model("mlp", (1, 28, 28), 10)) == 1_796_010
    # the benchmark MLP 784-1000-1000-1000-10: 785,000 + 2*1,001,000 + 10,010 = 2,797,010
    assert n_params(build_model("mlp", (784,), 10, hidden=(1000, 1000, 1000))) == 2_797_010
    # no hidden layer: logistic regression 784*10+10 = 7,850; an int is one hidden layer
    assert n_params(build_model("mlp", (784,), 10, hidden=())) == 7_850
    assert n_params(build_model("mlp", (4,), 2, hidden=3)) == (4 * 3 + 3) + (3 * 2 + 2)


def test_lenet5_caffe_parameter_count():
    # conv1 20*(1*5*5)+20 = 520; conv2 50*(20*5*5)+50 = 25,050; 28->24->12->8->4 so
    # fc3 (50*4*4)*500+500 = 400,500; fc4 500*10+10 = 5,010 -> 431,080
    assert n_params(build_model("lenet5", (1, 28, 28), 10)) == 431_080


def test_resnet_parameter_counts_match_published_figures():
    assert n_params(build_model("resnet18", (3, 32, 32), 10)) == 11_173_962
    assert n_params(build_model("resnet34", (3, 32, 32), 10)) == 21_282_122
    assert n_params(build_model("resnet50", (3, 224, 224), 1000)) == 25_557_032


def vgg16_count(in_channels: int, classes: int) -> int:
    """Independent count: conv3x3 with bias + BatchNorm (2 per channel); 512-wide classifier."""
    total, c = 0, in_channels
    for width in [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]:
        total += width * c * 9 + width + 2 * width
        c = width
    total += (512 * 512 + 512 + 2 * 512) * 2 + 512 * classes + classes
    return total


def wrn_count(depth: int, k: int, in_channels: int, classes: int) -> int:
    """Independent count of the pre-activation WRN: no conv biases, 1x1 shortcut on shape change."""
    n = (depth - 4) // 6
    total = in_channels * 16 * 9  # stem
    c = 16
    for width, stride in ((16 * k, 1), (32 * k, 2), (64 * k, 2)):
        for i in range(n):
            total += 2 * c + c * width * 9 + 2 * width + width * width * 9  # bn1, conv1, bn2, conv2
            if c != width or (i == 0 and stride != 1):
                total += c * width  # 1x1 shortcut
            c = width
    return total + 2 * c + c * classes + classes  # final bn, classifier


def test_vgg16_and_wrn_parameter_counts():
    assert n_params(build_model("vgg16", (3, 32, 32), 10)) == vgg16_count(3, 10) == 15_255_626
    assert n_params(build_model("wrn22_2", (3, 32, 32), 10)) == wrn_count(22, 2, 3, 10)


def test_class_count_and_channels_come_from_arguments():
    model = build_model("resnet18", torch.Size([5, 32, 32]), np.int64(37))
    assert model.conv1.in_channels == 5 and model.fc.out_features == 37


def test_conv_init_is_kaiming_fan_out_and_bn_is_identity():
    torch.manual_seed(0)
    model = build_model("resnet50", (3, 32, 32), 10)
    weight = model.layer3[1].conv2.weight  # 256 x 256 x 3 x 3
    expected = math.sqrt(2.0 / (256 * 9))
    assert abs(weight.std().item() / expected - 1) < 0.02
    assert abs(weight.mean().item()) < 0.05 * expected
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            assert torch.equal(module.weight, torch.ones_like(module.weight))
            assert torch.equal(module.bias, torch.zeros_like(module.bias))
    vgg = build_model("vgg16", (3, 32, 32), 10)
    assert all(torch.equal(m.bias, torch.zeros_like(m.bias)) for m in vgg.modules() if isinstance(m, nn.Conv2d))


def test_mlp_keeps_pytorch_default_linear_init():
    torch.manual_seed(0)
    layer = build_model("mlp", (1000,), 10, hidden=(1000,)).layers[0]
    bound = 1 / math.sqrt(1000)  # kaiming_uniform(a=sqrt(5)) -> U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert layer.weight.abs().max().item() <= bound
    assert abs(layer.weight.std().item() / (bound / math.sqrt(3)) - 1) < 0.01


def test_unknown_model_lists_available():
    with pytest.raises(ValueError, match="available models: lenet300, lenet5, mlp"):
        build_model("resnet1001", (3, 32, 32), 10)


def test_unknown_option_lists_allowed():
    assert model_options("mlp") == {"hidden": (1000, 1000)}
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['hiden'\].*\['hidden'\]"):
        build_model("mlp", (784,), 10, hiden=(10,))
    with pytest.raises(ValueError, match="allowed options: none"):
        build_model("resnet18", (3, 32, 32), 10, width=2)


@pytest.mark.parametrize(
    "name,shape,classes,message",
    [
        ("resnet18", (3, 32), 10, "channels, height, width"),
        ("vgg16", (784,), 10, "channels, height, width"),
        ("lenet5", (1, 10, 10), 10, "at least 12x12"),
        ("mlp", (0, 3), 10, "positive ints"),
        ("mlp", (784,), 0, "num_classes"),
        ("mlp", (784,), 2.5, "num_classes"),
    ],
)
def test_bad_shapes_and_class_counts(name, shape, classes, message):
    with pytest.raises(ValueError, match=message):
        build_model(name, shape, classes)


def test_bad_option_values():
    with pytest.raises(ValueError, match="hidden"):
        build_model("mlp", (784,), 10, hidden=(100, 0))
    with pytest.raises(ValueError, match="dropout"):
        build_model("wrn22_2", (3, 32, 32), 10, dropout=1.5)
