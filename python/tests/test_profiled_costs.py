"""dip.ProfiledCosts: layer costs fitted to measured samples (dip::profiled_cost_model), and
dip.Planner / dip.plan with costs=... and link_gbps=...

The samples are exact values of a + b * tokens + c * token_pairs, so the fits recover a, b and c
(in SI units) and price any work as the formula does; a plan priced from a profile whose times are
doubled takes twice as long when messages cost nothing.
"""

import random

import pytest

import dip
from conftest import random_vlm_batch

# Per output: (a, b, c) of a + b * tokens + c * token_pairs, in ms or bytes.
TRUTH = {
    "forward_ms": (0.05, 2e-4, 3e-8),
    "backward_input_ms": (0.06, 3e-4, 5e-8),
    "backward_weight_ms": (0.04, 1e-4, 1e-8),
    "activation_bytes": (1024.0, 8192.0, 4.0),
    "output_bytes": (512.0, 2048.0, 1.0),
}
OUTPUTS = {"forward_ms": "forward", "backward_input_ms": "backward_input", "backward_weight_ms": "backward_weight",
           "activation_bytes": "activation", "output_bytes": "output"}
SIZES = [(64,), (256,), (1024,), (4096,), (100, 900), (30, 40, 50)]  # sequence lengths of each sample


def work_of(lengths):
    return {"sequences": len(lengths), "tokens": sum(lengths), "token_pairs": sum(n * n for n in lengths)}


def value(output, work, time_scale=1.0):
    a, b, c = TRUTH[output]
    v = a + b * work["tokens"] + c * work["token_pairs"]
    return v * time_scale if output.endswith("_ms") else v


def samples(time_scale=1.0):
    out = []
    for lengths in SIZES:
        work = work_of(lengths)
        out.append({"work": work, **{o: value(o, work, time_scale) for o in TRUTH}})
    return out


def profile(model, time_scale=1.0):
    costs = dip.ProfiledCosts()
    for module in model.modules:
        costs.add_samples(module["name"], samples(time_scale))
    return costs


def test_the_fit_recovers_the_coefficients_of_all_five_outputs():
    costs = dip.ProfiledCosts()
    assert costs.modules == [] and repr(costs) == "<dip.ProfiledCosts (empty)>"
    report = costs.add_samples("vit", samples())
    assert report["basis"] == "quadratic" and report["features"] == ["1", "tokens", "token_pairs"]
    assert report["samples"] == len(SIZES)
    for output, name in OUTPUTS.items():
        fit = report[name]
        si = 1e-3 if output.endswith("_ms") else 1.0  # the report is in seconds, not ms
        assert fit["coefficients"] == pytest.approx([x * si for x in TRUTH[output]], rel=1e-8), name
        assert fit["max_relative_residual"] < 1e-9 and fit["r_squared"] == pytest.approx(1.0)
        assert fit["samples"] == len(SIZES)
        assert {"rms_residual", "max_abs_residual"} <= fit.keys()
    assert costs.report("vit") == report == costs.report("vit", 3)
    assert costs.modules == ["vit"] and repr(costs) == "<dip.ProfiledCosts of vit>"

    # The fit prices work it never saw, as the formula does (five outputs, times in ms).
    model = dip.Model.preset("vlm-s")
    work = work_of((333, 77))
    cost = costs.cost(model, "vit", 2, work)
    assert set(cost) == set(TRUTH)
    for output in TRUTH:
        assert cost[output] == pytest.approx(value(output, work), rel=1e-9), output
    assert costs.cost(model, "vit", 0, {"tokens": 500, "token_pairs": 250000})["forward_ms"] == pytest.approx(
        value("forward_ms", work_of((500,))), rel=1e-9)  # missing keys are 0


def test_a_layer_fit_wins_and_the_linear_basis():
    model = dip.Model.preset("vlm-s")
    costs = dip.ProfiledCosts()
    costs.add_samples("llm", samples())
    one_length = [{"work": {"sequences": k, "tokens": 128 * k, "token_pairs": 128 * 128 * k},
                   "forward_ms": 1 + 0.5 * k, "backward_input_ms": 2 * k, "backward_weight_ms": k,
                   "activation_bytes": 100 * k, "output_bytes": 10 * k} for k in (1, 2, 4)]
    report = costs.add_layer_samples("llm", 0, one_length, basis="linear")
    assert report["basis"] == "linear" and report["features"] == ["1", "tokens"]
    assert report["forward"]["coefficients"] == pytest.approx([1e-3, 0.5e-3 / 128], rel=1e-9)
    assert costs.report("llm", 0) == report and costs.report("llm", 1) == costs.report("llm")
    assert costs.cost(model, "llm", 0, {"sequences": 3, "tokens": 384, "token_pairs": 3 * 128 * 128})[
        "forward_ms"] == pytest.approx(2.5, rel=1e-9)
    assert costs.modules == ["llm"]


def test_errors_name_the_basis_the_sample_and_the_key():
    costs = dip.ProfiledCosts()
    with pytest.raises(dip.Error, match="cubic") as e:
        costs.add_samples("vit", samples(), basis="cubic")
    assert e.value.where == "basis"
    broken = samples()
    del broken[2]["forward_ms"]
    with pytest.raises(dip.Error, match="required field is missing") as e:
        costs.add_samples("vit", broken)
    assert e.value.where == "samples[2].forward_ms"
    broken = samples()
    del broken[4]["work"]
    with pytest.raises(dip.Error) as e:
        costs.add_layer_samples("vit", 1, broken)
    assert e.value.where == "samples[4].work"
    broken = samples()
    broken[1]["work"]["tokens"] = -5
    with pytest.raises(dip.Error, match=">= 0") as e:
        costs.add_samples("vit", broken)
    assert e.value.where == "samples[1].work.tokens"
    broken = samples()
    broken[0]["forward"] = 1.0  # a typo of forward_ms is not silently ignored
    with pytest.raises(dip.Error, match="unknown field") as e:
        costs.add_samples("vit", broken)
    assert e.value.where == "samples[0].forward"
    with pytest.raises(dip.Error, match="distinct sizes"):
        costs.add_samples("vit", samples()[:2])
    with pytest.raises(TypeError, match=r"samples\[0\]"):
        costs.add_samples("vit", [3])
    assert costs.modules == []  # nothing was kept
    model = dip.Model.preset("vlm-s")
    with pytest.raises(dip.Error, match="no profile samples"):
        costs.cost(model, "vit", 0, {"tokens": 10})
    with pytest.raises(dip.Error):
        costs.report("vit")
    costs.add_samples("vit", samples())
    with pytest.raises(dip.Error):
        costs.cost(model, "nope", 0, {"tokens": 10})
    with pytest.raises(dip.Error, match="beyond"):
        costs.cost(model, "vit", 10_000, {"tokens": 10})


# gpipe on two ranks, nothing else that could depend on the times' scale.
PLAIN = {"pp": 2, "search_ms": 0, "search_rollouts": 4, "threads": 1, "memory_strategies": False,
         "fit_memory": False, "tune_segments": False}


def test_a_profile_with_doubled_times_doubles_the_makespan():
    model = dip.Model.preset("vlm-s")
    batch = random_vlm_batch(random.Random(11), 4)
    once = dip.Planner(model, costs=profile(model), link_gbps=1e9, **PLAIN).plan(batch, "gpipe")
    twice = dip.plan(model, batch, "gpipe", costs=profile(model, 2.0), link_gbps=1e9, **PLAIN)
    assert twice.makespan_ms == pytest.approx(2 * once.makespan_ms, rel=1e-6)
    analytic = dip.plan(model, batch, "gpipe", link_gbps=1e9, **PLAIN)
    assert analytic.makespan_ms != pytest.approx(once.makespan_ms, rel=1e-3)  # the profile priced it

    # The planner copied the profile: samples added later do not reach it.
    costs = profile(model)
    planner = dip.Planner(model, costs=costs, link_gbps=1e9, **PLAIN)
    costs.add_layer_samples("llm", 0, samples(10.0))
    assert planner.plan(batch, "gpipe").makespan_ms == pytest.approx(once.makespan_ms, rel=1e-12)
    assert dip.plan(model, batch, "gpipe", costs=costs, link_gbps=1e9, **PLAIN).makespan_ms > once.makespan_ms


def test_link_gbps_sets_the_bandwidth_of_a_message():
    model = dip.Model.preset("vlm-s")
    batch = random_vlm_batch(random.Random(5), 4)
    slow = dip.plan(model, batch, "1f1b", link_gbps=0.001, **PLAIN)
    fast = dip.plan(model, batch, "1f1b", link_gbps=1000, **PLAIN)
    assert slow.makespan_ms > fast.makespan_ms
    for bad in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(dip.Error, match="> 0") as e:
            dip.Planner(model, link_gbps=bad)
        assert e.value.where == "link_gbps"
