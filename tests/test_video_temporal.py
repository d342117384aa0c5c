"""The temporal pieces against NumPy (tests/references/numpy_video.py), on synthetic videos
whose true flow is known: a photo translated by integer shifts and rotated a little."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import EXAMPLES, SHALLOW, assert_rel, smooth_image
from references import numpy_video

import jaxstyle
from jaxstyle import runtime
from jaxstyle.losses import Temporal, temporal_loss
from jaxstyle.video import flow, temporal

PHOTO = jaxstyle.load_image(EXAMPLES / "chelsea.jpg")  # 300 x 451
H, W = 48, 64


def shifted(dx: int, dy: int, h: int = H, w: int = W, y0: int = 40, x0: int = 60):
    """A window of the photo whose content moved by (dx, dy) against the window at (y0, x0):
    frame(p) = photo(p + (x0, y0) - (dx, dy))."""
    return PHOTO[y0 - dy:y0 - dy + h, x0 - dx:x0 - dx + w]


def constant(u: float, v: float, h: int = H, w: int = W):
    return np.broadcast_to(np.array([u, v], np.float32), (h, w, 2)).copy()


def rotation_flow(angle_deg: float, h: int, w: int):
    """The flow of a rotation by `angle_deg` about the centre: p -> R p."""
    a = np.deg2rad(angle_deg)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    cx, cy = (w - 1) / 2, (h - 1) / 2
    x, y = xs - cx, ys - cy
    rx, ry = np.cos(a) * x - np.sin(a) * y, np.sin(a) * x + np.cos(a) * y
    return np.stack([rx - x, ry - y], -1).astype(np.float32)


def test_warp_is_exact_inside_the_frame_for_integer_shifts():
    earlier, later = shifted(0, 0), shifted(3, 2)
    # later(p) = earlier(p - (3, 2)): the backward flow of `later` is (-3, -2).
    moved = np.asarray(jax.jit(temporal.warp)(earlier, constant(-3.0, -2.0)))
    np.testing.assert_array_equal(moved[2:, 3:], later[2:, 3:])
    assert not np.array_equal(moved[:2], later[:2])  # uncovered: clamped, not the truth


def test_warp_matches_numpy_for_a_rotation():
    image = smooth_image(3, 20, 24)
    f = rotation_flow(4.0, 20, 24)
    np.testing.assert_allclose(jax.jit(temporal.warp)(image, f),
                               numpy_video.warp(image, f), atol=2e-6)


def test_consistency_matches_ruders_checker_on_a_rotation_and_a_shift():
    h, w = 18, 22
    back, fwd = rotation_flow(-3.0, h, w), rotation_flow(3.0, h, w)
    fwd[5:9, 6:12] += 4.0  # an inconsistent patch: disocclusion and motion edges
    for b, f in ((back, fwd), (constant(-3, -2, h, w), constant(3, 2, h, w))):
        np.testing.assert_allclose(jax.jit(temporal.consistency)(b, f),
                                   numpy_video.consistency(b, f), atol=1e-5)


@pytest.mark.parametrize("dx,dy", [(3, 2), (-2, 4), (0, -1)])
def test_the_mask_marks_the_uncovered_border_and_only_it(dx, dy):
    c = np.asarray(jax.jit(temporal.consistency)(constant(-dx, -dy), constant(dx, dy)))
    ys, xs = np.mgrid[0:H, 0:W]
    covered = (xs - dx >= 0) & (xs - dx <= W - 1) & (ys - dy >= 0) & (ys - dy <= H - 1)
    np.testing.assert_array_equal(c >= 0.5, covered)
    new = np.asarray(temporal.uncovered(constant(-dx, -dy), constant(dx, dy)))
    np.testing.assert_array_equal(new, ~covered)
    # Beyond the blur's reach (2 px) of the uncovered strip, fully reliable.
    far = ((xs - dx >= 2) & (xs - dx <= W - 3) & (ys - dy >= 2) & (ys - dy <= H - 3))
    assert np.all(c[far] == 1.0) and np.all(c[~covered] < 0.5)


@pytest.mark.parametrize("kind", ["shift", "rotation"])
def test_dis_end_point_error_is_below_half_a_pixel(kind):
    h, w = 96, 128
    if kind == "shift":
        a, b = shifted(0, 0, h, w, 100, 150), shifted(3, 2, h, w, 100, 150)
        truth = constant(-3.0, -2.0, h, w)  # flow(b, a)
    else:
        import cv2

        window = PHOTO[100:100 + h, 150:150 + w]
        truth = rotation_flow(2.0, h, w)  # b(p) = a(p + truth(p)): b is a rotated
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        a = window
        b = cv2.remap(window, xs + truth[..., 0], ys + truth[..., 1], cv2.INTER_CUBIC)
    est = flow.Flow("dis-medium")(flow.gray(np.uint8(b * 255 + 0.5)),
                                  flow.gray(np.uint8(a * 255 + 0.5)))
    inside = np.zeros((h, w), bool)
    inside[6:-6, 6:-6] = True
    epe = np.sqrt(np.sum((est - truth) ** 2, -1))[inside]
    assert epe.mean() < 0.5, epe.mean()


def test_identity_stylizer_has_warping_error_close_to_zero():
    frames = [shifted(2 * t, t) for t in range(4)]
    f = flow.Flow("dis-medium")
    errors, unwarped = [], []
    for a, b in zip(frames[:-1], frames[1:], strict=True):
        ga, gb = (flow.gray(np.uint8(x * 255 + 0.5)) for x in (a, b))
        forward, backward = f(ga, gb), f(gb, ga)
        mask = temporal.consistency(forward, backward)
        errors.append(float(temporal.warping_error(a, b, forward, mask)))
        unwarped.append(float(np.mean((a - b) ** 2)))
    assert max(errors) < 2e-3 * np.mean(unwarped) + 1e-5, (errors, unwarped)


def test_warping_error_is_the_masked_mean_of_the_warped_difference():
    a, b = smooth_image(1, 12, 16), smooth_image(2, 12, 16)
    f, m = rotation_flow(5.0, 12, 16), smooth_image(3, 12, 16)[..., 0]
    diff = a - numpy_video.warp(b, f)
    expected = np.sum(m[..., None] * diff ** 2) / (3 * m.sum())
    assert float(jax.jit(temporal.warping_error)(a, b, f, m)) == pytest.approx(expected, 1e-5)


def test_closest_first_and_the_blend():
    rng = np.random.default_rng(0)
    c = rng.random((3, 5, 6)).astype(np.float32)
    got = np.asarray(temporal.closest_first(c))
    np.testing.assert_allclose(got, numpy_video.closest_first(c), atol=1e-6)
    assert np.all(got.sum(0) <= 1 + 1e-6)
    y, warped = rng.random((5, 6, 3)), rng.random((3, 5, 6, 3))
    out = temporal.blend(y, warped, got, 0.6)
    expected = (1 - 0.6 * got.sum(0))[..., None] * y + 0.6 * np.sum(got[..., None] * warped, 0)
    np.testing.assert_allclose(out, expected, atol=1e-6)
    np.testing.assert_allclose(temporal.blend(y, warped, got, 0.0), y, atol=0)


def test_temporal_loss_and_its_gradient_match_numpy():
    rng = np.random.default_rng(1)
    x = rng.random((10, 12, 3)).astype(np.float32)
    t = Temporal(rng.random((3, 10, 12, 3)).astype(np.float32),
                 rng.random((3, 10, 12)).astype(np.float32))
    value, grad = jax.jit(jax.value_and_grad(temporal_loss))(x, t)
    want, want_grad = numpy_video.temporal_loss_and_grad(x, t.images, t.weights)
    assert float(value) == pytest.approx(want, rel=1e-5)
    assert_rel(grad, want_grad, 1e-5, "gradient")


def test_the_objective_adds_tau_times_the_temporal_loss(weights, content_image, style_image):
    config = jaxstyle.StyleConfig(temporal_weight=7.0, style_weight=1e3)
    from jaxstyle.objective import prepare_targets

    spec, targets = prepare_targets(weights, content_image, style_image, config)
    rng = np.random.default_rng(2)
    t = Temporal(rng.random((2, *content_image.shape)).astype(np.float32),
                 rng.random((2, *content_image.shape[:2])).astype(np.float32))
    x = smooth_image(4, *content_image.shape[:2])
    f = jax.jit(jaxstyle.total_loss, static_argnames="spec")
    plain, parts = f(weights.params, targets, config.loss_weights, x, spec=spec)
    both, parts_t = f(weights.params, targets._replace(temporal=t), config.loss_weights, x,
                      spec=spec)
    lt, _ = numpy_video.temporal_loss_and_grad(x, t.images, t.weights)
    assert float(parts["temporal"]) == 0 and float(parts_t["temporal"]) == pytest.approx(lt, 1e-5)
    assert float(both - plain) == pytest.approx(7.0 * lt, rel=1e-3)
    # Three weights keep meaning alpha, beta, gamma: tau is 0.
    assert float(jaxstyle.LossWeights(1.0, 2.0, 3.0).temporal_weight) == 0.0


def test_later_frames_share_one_program(weights):
    """stylize with new temporal images, weights and tau compiles nothing new."""
    content, style = smooth_image(5, 32, 32), smooth_image(6, 32, 32)
    rng = np.random.default_rng(3)
    config = jaxstyle.StyleConfig(scales=None, iterations=2, image_size=32,
                                  temporal_weight=1e3, optimizer="adam", **SHALLOW)

    def frame(tau):
        t = Temporal(rng.random((2, 32, 32, 3)).astype(np.float32),
                     rng.random((2, 32, 32)).astype(np.float32))
        return jaxstyle.stylize(content, style, weights=weights,
                                config=config.replace(temporal_weight=tau), temporal=t,
                                init=t.images[0])

    first = frame(1e3)
    with runtime.count_compiles() as compiles:
        second = frame(5e4)
    assert not compiles.names, compiles.names
    assert first.history["temporal"].shape == second.history["temporal"].shape == (2,)
    assert second.history["temporal"][-1] > 0


def test_jnp_and_numpy_agree_on_the_gaussian():
    taps = flow.gaussian_taps()
    assert len(taps) == 5 and taps.sum() == pytest.approx(1.0)
    assert jnp.allclose(taps, taps[::-1])


def test_stylize_checks_the_temporal_targets(weights):
    content = smooth_image(5, 32, 32)
    config = jaxstyle.StyleConfig(scales=None, iterations=1, image_size=32)
    bad = [Temporal(np.zeros((1, 16, 16, 3)), np.zeros((1, 16, 16))),  # not the output's size
           Temporal(np.zeros((1, 32, 32, 3)), np.full((1, 32, 32), 2.0)),  # weights > 1
           (np.zeros((1, 32, 32, 3)), np.zeros((1, 32, 32)))]  # not a Temporal
    for targets in bad:
        with pytest.raises(jaxstyle.SettingError) as err:
            jaxstyle.stylize(content, content, weights=weights, config=config,
                             temporal=targets)
        assert err.value.name == "temporal"
