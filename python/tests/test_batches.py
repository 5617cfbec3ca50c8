"""Batches from the built-in sources and traces, as sample dicts that plan() takes back."""

import pytest

import dip


@pytest.mark.parametrize("source", ["uniform", "laion", "obelics", "scienceqa", "mixed", "dynamic"])
def test_vision_language_sources(vlm_s, source):
    batch = dip.batch_from_source(source, vlm_s, microbatches=4, seed=2)
    assert len(batch) == 4
    for microbatch in batch:
        assert microbatch and all(isinstance(s, dict) and "text_tokens" in s for s in microbatch)
    plan = dip.plan(vlm_s, batch, "1f1b")
    assert plan.makespan_ms > 0


def test_uniform_source_is_dip_plans_uniform_batch(vlm_s):
    batch = dip.batch_from_source("uniform", vlm_s, microbatches=2)
    assert batch[0] == [{"text_tokens": 8192 - 10 * 169, "images": [{"tokens": 169}] * 10}]


def test_sources_are_seeded_and_stream_on(vlm_s):
    a = dip.batch_from_source("obelics", vlm_s, microbatches=4, seed=5)
    b = dip.batch_from_source("obelics", vlm_s, microbatches=4, seed=5)
    assert a == b
    source = dip.BatchSource("obelics", vlm_s, seed=5)
    assert source.name == "obelics"
    assert source.next_batch(4) == a
    assert source.next_batch(4) != a


def test_video_source_and_trace_file(t2v_s, vlm_s, data_dir):
    video = dip.batch_from_source("video", t2v_s, microbatches=3, seed=1)
    assert all("clips" in s for mb in video for s in mb)
    assert dip.plan(t2v_s, video, "dip", search_ms=5).microbatches[0]["clips"] >= 1
    trace = dip.batch_from_source(str(data_dir / "vlm_trace.jsonl"), vlm_s, microbatches=2)
    assert len(trace) == 2


def test_uniform_text_to_video_cannot_be_written_as_samples(t2v_s):
    # Its microbatch conditions one clip on eight captions, which a sample dict cannot say.
    with pytest.raises(dip.Error, match="cannot be written as sample dicts"):
        dip.batch_from_source("uniform", t2v_s, microbatches=1)


def test_unknown_source(vlm_s):
    with pytest.raises(dip.Error, match="unknown data 'imagenet'"):
        dip.batch_from_source("imagenet", vlm_s)
