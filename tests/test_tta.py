"""Test-time augmentation: the flip average equals the hand-computed one; crops; bad input."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnzoo.errors import UserError
from cnnzoo.training.tta import predict_tta, tta_views

pytestmark = pytest.mark.usefixtures("one_thread")


def model():
    torch.manual_seed(0)
    # Not mirror-symmetric, so the flipped view really gives other logits.
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)).eval()


def test_flip_average_equals_the_hand_computed_average():
    net = model()
    x = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    by_hand = (F.softmax(net(x), 1) + F.softmax(net(x.flip(-1)), 1)) / 2
    out = predict_tta(net, x, flips=True)
    torch.testing.assert_close(out.exp(), by_hand)
    torch.testing.assert_close(F.softmax(out, 1), by_hand)  # a valid logits tensor for the average
    assert not torch.allclose(net(x).softmax(1), by_hand)


def test_without_views_it_is_the_plain_prediction():
    net = model()
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(predict_tta(net, x, flips=False).softmax(1), net(x).softmax(1))


def test_crops_are_centre_then_corners_resized_back():
    x = torch.arange(64, dtype=torch.float32).view(1, 1, 8, 8)
    views = tta_views(x, flips=True, crops=2, crop_fraction=0.5)
    assert len(views) == 6 and all(v.shape == x.shape for v in views)
    assert torch.equal(views[1], x.flip(-1))
    centre = F.interpolate(x[..., 2:6, 2:6], size=(8, 8), mode="bilinear", align_corners=False)
    corner = F.interpolate(x[..., 0:4, 0:4], size=(8, 8), mode="bilinear", align_corners=False)
    assert torch.equal(views[2], centre) and torch.equal(views[4], corner)
    assert predict_tta(model(), torch.randn(2, 3, 8, 8), crops=5).shape == (2, 5)


def test_too_many_crops_is_a_user_error():
    with pytest.raises(UserError, match="crops"):
        predict_tta(model(), torch.randn(1, 3, 8, 8), crops=9)
