"""Shared fixtures of the dip Python tests (run: PYTHONPATH=build/python python3 -m pytest python/tests)."""

import pathlib
import random

import pytest

import dip

REPO = pathlib.Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"


@pytest.fixture(scope="session")
def data_dir():
    return DATA


@pytest.fixture(scope="session")
def toy():
    """tests/data/toy.json: one 8-layer module, 1 ms forward and 2 ms backward per layer."""
    return dip.Model.from_json(DATA / "toy.json")


@pytest.fixture(scope="session")
def vlm_s():
    return dip.Model.preset("vlm-s")


@pytest.fixture(scope="session")
def t2v_s():
    return dip.Model.preset("t2v-s")


def random_vlm_batch(rng: random.Random, microbatches: int):
    """Microbatches of 1-4 image-text samples, each well within one packed sequence."""
    batch = []
    for _ in range(microbatches):
        samples = []
        for _ in range(rng.randint(1, 4)):
            sample = {"text_tokens": rng.randint(0, 1200)}
            if rng.random() < 0.5:
                sample["images"] = rng.randint(1, 6)  # at the model's default size
            else:
                sample["images"] = [{"width": rng.randint(64, 448), "height": rng.randint(64, 448)}
                                    for _ in range(rng.randint(0, 4))]
            if sample["text_tokens"] == 0 and not sample["images"]:
                sample["text_tokens"] = 1
            samples.append(sample)
        batch.append(samples)
    return batch


def random_t2v_batch(rng: random.Random, microbatches: int):
    """Microbatches of 1-3 captioned clips of at most 5 s (at most 15 s together)."""
    return [[{"text_tokens": rng.randint(8, 128), "clips": [{"seconds": round(rng.uniform(0.5, 5.0), 2)}]}
             for _ in range(rng.randint(1, 3))]
            for _ in range(microbatches)]
