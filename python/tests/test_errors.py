"""Mistakes in batches and arguments: dip.Error (a ValueError) or TypeError, naming the place."""

import pytest

import dip


def plan_vlm(vlm_s, batch, **kwargs):
    return dip.plan(vlm_s, batch, "1f1b", **kwargs)


GOOD = {"text_tokens": 100, "images": 1}


@pytest.mark.parametrize("sample, where, message", [
    ({"images": 2}, "batch[1][1] field 'text_tokens'", "required field is missing"),
    ({"text_tokens": -5}, "batch[1][1] field 'text_tokens'", "expected an integer"),
    ({"text_tokens": "many"}, "batch[1][1] field 'text_tokens'", "expected an integer, got string"),
    ({"text_tokens": 10, "images": [{"width": -3, "height": 10}]}, "batch[1][1] field 'images[0].width'",
     "expected an integer"),
    ({"text_tokens": 10, "images": [{"width": 30}]}, "batch[1][1] field 'images[0].height'", "required"),
    ({"text_tokens": 10, "videos": 1}, "batch[1][1] field 'videos'", "unknown field"),
    ({"text_tokens": 0}, "batch[1][1]", "empty sample"),
    ({"text_tokens": 10, "clips": [{"seconds": 3}]}, "batch[1][1]", "no video module"),
])
def test_bad_samples_name_microbatch_sample_and_key(vlm_s, sample, where, message):
    with pytest.raises(dip.Error) as caught:
        plan_vlm(vlm_s, [[GOOD], [GOOD, sample]])
    assert caught.value.where == where
    assert message in caught.value.what
    assert str(caught.value).startswith(where)
    assert isinstance(caught.value, ValueError)


def test_a_microbatch_must_fit_one_packed_sequence(vlm_s):
    with pytest.raises(dip.Error) as caught:
        plan_vlm(vlm_s, [[GOOD], [{"text_tokens": 5000}, {"text_tokens": 5000}]])
    assert caught.value.where == "batch[1]"
    assert "fill 2 packed microbatches" in caught.value.what and "8192" in caught.value.what


def test_an_oversized_sample_is_cut_with_a_warning(vlm_s):
    with pytest.warns(UserWarning, match=r"batch\[0\]\[0\] is larger than one microbatch holds"):
        plan = plan_vlm(vlm_s, [[{"text_tokens": 9000, "images": 1}]])
    assert plan.microbatches[0]["text_tokens"] + plan.microbatches[0]["image_tokens"] == 8192


@pytest.mark.parametrize("batch, message", [
    ({"text_tokens": 1}, r"^batch: expected a list of microbatches"),
    ([{"text_tokens": 1}], r"^batch\[0\]: expected a list of sample dicts, got dict"),
    ([[GOOD], [GOOD, "text"]], r"^batch\[1\]\[1\]: expected a sample dict"),
    ([[{"text_tokens": {1, 2}}]], r"^batch\[0\]\[0\]\['text_tokens'\]: expected a number"),
])
def test_batches_of_the_wrong_shape_are_type_errors(vlm_s, batch, message):
    with pytest.raises(TypeError, match=message):
        plan_vlm(vlm_s, batch)


def test_empty_batch_and_microbatch(vlm_s):
    with pytest.raises(dip.Error, match="non-empty list of microbatches"):
        plan_vlm(vlm_s, [])
    with pytest.raises(dip.Error, match=r"batch\[0\]: expected a non-empty list"):
        plan_vlm(vlm_s, [[]])


def test_numpy_style_integers_are_accepted(vlm_s):
    class Index:  # what numpy integers look like to Python: __index__
        def __init__(self, n):
            self.n = n

        def __index__(self):
            return self.n

    plan = plan_vlm(vlm_s, [[{"text_tokens": Index(300), "images": Index(2)}]])
    assert plan.microbatches[0]["images"] == 2


@pytest.mark.parametrize("kwargs, where, message", [
    ({"schedule": "2f2b"}, "schedule", "unknown schedule '2f2b'"),
    ({"partition": "static"}, "partition", "unknown partition 'static'"),
    ({"gpu": "A100"}, "gpu", "unknown GPU 'A100'"),
    ({"pp": 0}, "pp", "must be >= 1"),
    ({"memory_cap_gib": -1.0}, "memory_cap_gib", "must be > 0"),
])
def test_bad_arguments(vlm_s, kwargs, where, message):
    schedule = kwargs.pop("schedule", "1f1b")
    with pytest.raises(dip.Error) as caught:
        dip.plan(vlm_s, [[GOOD]], schedule, **kwargs)
    assert caught.value.where == where and message in caught.value.what


def test_a_cap_below_the_weights_is_infeasible(vlm_s):
    with pytest.raises(dip.Error) as caught:
        dip.plan(vlm_s, [[GOOD]] * 4, "1f1b", memory_cap_gib=4)
    assert caught.value.code == "infeasible"
    assert "do not fit" in caught.value.what


def test_error_type():
    assert issubclass(dip.Error, ValueError)
    assert dip.Error.__module__ == "dip"
