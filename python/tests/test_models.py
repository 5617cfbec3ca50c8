"""Models from presets and from JSON model files."""

import pytest

import dip


def test_presets_are_listed_and_load():
    names = dip.presets()
    assert {"vlm-s", "vlm-m", "vlm-l", "t2v-s", "t2v-l", "llama3-8b"} <= set(names)
    for name in names:
        assert dip.Model.preset(name).name == name


def test_preset_properties(vlm_s):
    assert (vlm_s.pp, vlm_s.tp, vlm_s.gpu) == (4, 4, "H800")
    assert vlm_s.kind == "vision-language"
    assert vlm_s.description == "ViT-5B + Llama3-8B"
    assert [m["name"] for m in vlm_s.modules] == ["vit", "projector", "llm"]
    vit, projector, llm = vlm_s.modules
    assert vit["item"] == "image" and vit["role"] == "encoder" and vit["inputs"] == []
    assert projector["inputs"] == ["vit"] and llm["inputs"] == ["projector"]
    assert llm["item"] == "sequence" and llm["layers"] == 34  # embedding + 32 blocks + head
    assert vlm_s.parameter_count == sum(m["parameters"] for m in vlm_s.modules)
    assert "vlm-s" in repr(vlm_s)


def test_text_to_video_preset(t2v_s):
    assert t2v_s.kind == "text-to-video"
    assert [m["item"] for m in t2v_s.modules] == ["caption", "caption", "clip"]


def test_unknown_preset_names_the_known_ones():
    with pytest.raises(dip.Error) as caught:
        dip.Model.preset("vlm-xl")
    assert caught.value.where == "model preset"
    assert "unknown preset 'vlm-xl'" in caught.value.what and "vlm-s" in caught.value.what
    assert caught.value.code == "not found"
    assert isinstance(caught.value, ValueError)


def test_model_file_by_path_str_and_pathlike(data_dir):
    for path in (data_dir / "toy.json", str(data_dir / "toy.json")):
        toy = dip.Model.from_json(path)
        assert toy.name == "toy" and toy.kind == "text"
        assert (toy.pp, toy.tp, toy.gpu) == (1, 1, "H800")  # dip-plan's defaults for a file
        assert toy.modules[0]["layers"] == 8
        assert toy.source.endswith("toy.json")


def test_model_file_defaults_come_from_the_file(data_dir):
    model = dip.Model.from_json(data_dir / "vlm_small.json")
    assert model.kind == "vision-language"
    assert (model.pp, model.tp, model.gpu) == (4, 2, "H100")


def test_model_from_json_text():
    text = '{"name": "mini", "pp": 2, "modules": [{"name": "lm", "modality": "text", "layers": 4, ' \
           '"layer_cost": {"forward_ms": 1, "backward_ms": 2}}]}'
    model = dip.Model.from_json(text)
    assert (model.name, model.pp, model.source) == ("mini", 2, "<string>")


def test_bad_model_json_names_the_field():
    with pytest.raises(dip.Error) as caught:
        dip.Model.from_json('{"name": "bad", "modules": [{"name": "lm", "layers": 4, '
                            '"layer_cost": {"forward_ms": 1, "backward_ms": 2}}]}')
    assert "modality" in str(caught.value) and "<string>" in str(caught.value)


def test_missing_model_file():
    with pytest.raises(dip.Error) as caught:
        dip.Model.from_json("no/such/model.json")
    assert caught.value.code == "not found" and "no/such/model.json" in caught.value.where
