from __future__ import annotations

import json
import re
import shutil

import cv2
import numpy as np
import pytest
from detection_support import MEDIA, RUNTIME, V1, V2, default_model_path, need_shared

from shaobing.agent.detection.adapters import detect_layout
from shaobing.agent.detection.detector import Detector
from shaobing.agent.detection.nms import iou_matrix
from shaobing.agent.detection.runtime import ModelError, load_model
from shaobing.models.fetch import ModelHashError, fetch, verify
from shaobing.models.manifest import all_manifests, get_manifest


def boxes_of(dets, label):
    return np.array([d.box.as_list() for d in dets if d.label == label]).reshape(-1, 4)


@pytest.fixture(scope="module", params=["v1", "v2"])
def coco(request):
    need_shared()
    return Detector(V1 if request.param == "v1" else V2, num_threads=2, runtime=RUNTIME)


@pytest.mark.parametrize("name", ["traffic_0001.bmp", "traffic_0002.bmp", "traffic_0003.bmp"])
def test_detection_shared_models_find_two_cars(coco, name):
    dets = coco.detect(cv2.imread(str(MEDIA / name))).detections
    cars = [d for d in dets if d.label == "car"]
    assert len(cars) >= 2
    # The two best car boxes are distinct cars, not one car found twice.
    top = boxes_of(sorted(cars, key=lambda d: -d.score)[:2], "car")
    assert iou_matrix(top[:1], top[1:])[0, 0] < 0.2
    assert all(0 <= v <= 1 for d in cars for v in d.box.as_list())


def test_detection_shared_models_find_the_person(coco):
    frame = cv2.imread(str(MEDIA / "squat.bmp"))
    dets = coco.detect(frame).detections
    people = [d for d in dets if d.label == "person"]
    assert len(people) == 1
    x0, y0, x1, y1 = people[0].box_px
    h, w = frame.shape[:2]
    assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h and (y1 - y0) > h / 2


def test_detection_both_models_agree_on_boxes():
    need_shared()
    frame = cv2.imread(str(MEDIA / "traffic_0002.bmp"))
    a = Detector(V1, runtime=RUNTIME).detect(frame).detections
    b = Detector(V2, runtime=RUNTIME).detect(frame).detections
    # Same cars whatever order the model's outputs come in.
    best = iou_matrix(boxes_of(a, "car"), boxes_of(b, "car")).max(axis=1)
    assert (best > 0.6).all()


def test_detection_ir_frame_is_handled_explicitly(coco):
    colour = cv2.imread(str(MEDIA / "squat.bmp"))
    grey = cv2.cvtColor(colour, cv2.COLOR_BGR2GRAY)
    for frame in (grey, grey[..., None], cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)):
        result = coco.detect(frame)
        assert result.ir
        assert [d.label for d in result.detections if d.score > 0.5] == ["person"]
    assert not coco.detect(colour).ir
    bgra = cv2.cvtColor(colour, cv2.COLOR_BGR2BGRA)
    assert [d.label for d in coco.detect(bgra).detections] == ["person"]


def test_detection_default_model_fetched_and_detects_person():
    path = default_model_path()
    manifest = get_manifest("blazepose-person")
    verify(path, manifest.sha256)
    det = Detector("blazepose-person", model_dir=path.parent, runtime=RUNTIME)
    assert det.adapter.name == "anchor_ssd"
    if not MEDIA.is_dir():
        pytest.skip(f"no media at {MEDIA}")
    people = det.detect(cv2.imread(str(MEDIA / "squat.bmp"))).detections
    assert len(people) == 1 and people[0].label == "person" and people[0].score > 0.8
    for other in ("traffic_0001.bmp", "cat_720p.jpg", "owl.jpg"):
        assert det.detect(cv2.imread(str(MEDIA / other))).detections == []


def test_detection_fetch_is_idempotent_and_replaces_bad_file(tmp_path):
    good = default_model_path()
    manifest = get_manifest("blazepose-person")
    target = tmp_path / manifest.file
    target.write_bytes(b"garbage")
    messages = []
    assert fetch(dest=tmp_path, progress=messages.append) == target
    verify(target, manifest.sha256)
    assert any("replacing bad cached file" in m for m in messages)
    messages.clear()
    fetch(dest=tmp_path, progress=messages.append)
    assert any("present, sha256 ok" in m for m in messages)
    assert good.read_bytes() == target.read_bytes()


def test_detection_hash_mismatch_names_file_and_hashes(tmp_path):
    f = tmp_path / "m.tflite"
    f.write_bytes(b"not the model")
    expected = get_manifest("blazepose-person").sha256
    with pytest.raises(ModelHashError) as err:
        verify(f, expected)
    msg = str(err.value)
    assert str(f) in msg and expected in msg and err.value.actual in msg


def test_detection_corrupt_and_missing_model_errors(tmp_path):
    need_shared()
    missing = tmp_path / "none.tflite"
    with pytest.raises(ModelError, match=r"none\.tflite does not exist"):
        Detector(missing, runtime=RUNTIME)
    notflite = tmp_path / "photo.tflite"
    shutil.copy(MEDIA / "owl.jpg", notflite)
    with pytest.raises(ModelError, match=r"photo\.tflite is not a TFLite flatbuffer"):
        load_model(notflite, RUNTIME)
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(V1.read_bytes()[:4096])
    with pytest.raises(ModelError, match=r"truncated\.tflite could not be loaded"):
        Detector(truncated, runtime=RUNTIME)


def test_detection_wrong_layout_errors(tmp_path):
    need_shared()
    # A post-processed SSD forced through the raw-anchor decoder has no anchors.
    with pytest.raises(ModelError, match="manifest with anchor geometry"):
        Detector(V1, adapter="anchor_ssd", runtime=RUNTIME)
    pose = default_model_path()
    with pytest.raises(ModelError, match="not a post-processed SSD"):
        Detector(pose, adapter="ssd_postprocess", runtime=RUNTIME)
    # Raw anchor outputs with no manifest (the hash no longer matches one) cannot be
    # decoded: the error says what is missing instead of producing nonsense boxes.
    unknown = tmp_path / "unknown.tflite"
    unknown.write_bytes(pose.read_bytes() + b"\0" * 16)
    assert detect_layout(load_model(unknown, RUNTIME)) == "anchor_ssd"
    with pytest.raises(ModelError, match=r"unknown\.tflite has raw SSD outputs"):
        Detector(unknown, runtime=RUNTIME)


def test_detection_manifests_are_valid():
    names = {m.name for m in all_manifests()}
    assert {"blazepose-person", "coco-ssd-mobilenet-v1-quant"} <= names


def test_detection_cli_prints_json_and_annotates(tmp_path, capsys):
    import argparse

    from shaobing.cli.commands import detect

    need_shared()
    parser = argparse.ArgumentParser()
    detect.register(parser.add_subparsers())
    args = parser.parse_args(
        [
            "detect",
            "--model",
            str(V1),
            "--runtime",
            RUNTIME,
            "--annotate",
            str(tmp_path),
            str(MEDIA / "traffic_0001.bmp"),
            str(MEDIA / "squat.bmp"),
        ]
    )
    assert args.func(args) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [d["label"] for d in lines[0]["detections"]] == ["car", "car"]
    assert [d["label"] for d in lines[1]["detections"]] == ["person"]
    assert cv2.imread(lines[1]["annotated"]) is not None
    bad = parser.parse_args(["detect", "--model", str(tmp_path / "x.tflite"), "a.jpg"])
    assert bad.func(bad) == 2
    assert "x.tflite does not exist" in capsys.readouterr().err
    noimg = parser.parse_args(
        ["detect", "--model", str(V1), "--runtime", RUNTIME, str(tmp_path / "nope.jpg")]
    )
    assert noimg.func(noimg) == 1
    assert "cannot read image" in capsys.readouterr().err


def test_detection_models_command_fetch_and_list(tmp_path, capsys, monkeypatch):
    import argparse

    from shaobing.cli.commands import models

    default_model_path()  # skips when the registry is out of reach
    monkeypatch.setenv("SHAOBING_MODEL_DIR", str(tmp_path))
    parser = argparse.ArgumentParser()
    models.register(parser.add_subparsers())
    args = parser.parse_args(["models", "fetch"])
    assert args.func(args) == 0
    out = capsys.readouterr()
    fetched = tmp_path / get_manifest("blazepose-person").file
    assert out.out.strip() == str(fetched) and "sha256 ok" in out.err
    args = parser.parse_args(["models", "list"])
    assert args.func(args) == 0
    listing = capsys.readouterr().out
    assert listing.splitlines()[0].split()[:4] == ["NAME", "ADAPTER", "SOURCE", "CACHED"]
    assert re.search(r"^blazepose-person +anchor_ssd +pypi +yes ", listing, re.M), listing
    args = parser.parse_args(["models", "fetch", "coco-ssd-mobilenet-v1-quant"])
    assert args.func(args) == 1
    assert "installed by provisioning" in capsys.readouterr().err
