"""Weight files cannot run code; broken or unpinned files are refused with one sentence."""

import builtins
import hashlib
import os
import pickle
import subprocess
import urllib.error

import numpy as np
import pytest
import torch

from resdet.checkpoint import (
    load_plain_pickle,
    load_weights,
    read_weights_file,
    resolve_weights,
    save_detectron2_pkl,
)
from resdet.errors import UserError
from resdet.modeling import build_backbone


def _one_sentence(msg: str, path) -> None:
    assert "\n" not in msg and str(path) in msg


class _Hostile:
    """Unpickling this calls ``func(arg)``: what a malicious weight file would do."""

    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return (self.func, (self.arg,))


@pytest.mark.parametrize("func, qualname", [
    (os.system, f"{os.system.__module__}.system"),
    (builtins.eval, "builtins.eval"),
    (subprocess.getoutput, "subprocess.getoutput"),
])
def test_hostile_pkl_is_refused_and_nothing_runs(tmp_path, func, qualname):
    sentinel = tmp_path / "SENTINEL"
    arg = (f"touch {sentinel}" if func is not builtins.eval
           else f"open({str(sentinel)!r}, 'w').close()")
    path = tmp_path / "model_final.pkl"
    with open(path, "wb") as f:
        pickle.dump({"model": {"conv1_w": _Hostile(func, arg)}, "__author__": "x"}, f)
    with pytest.raises(UserError) as e:
        load_plain_pickle(path)
    assert str(e.value) == (f"{path} is not a plain weight pickle: it asks to load {qualname}, "
                            "which resdet refuses to run; if you trust the file's author, load "
                            "it in Python yourself and re-save only the network's state dict "
                            "(torch.save(state_dict, 'weights.pth')), then pass that file")
    with pytest.raises(UserError, match="refuses to run"):
        load_weights(build_backbone("resnet18"), str(path))
    assert not sentinel.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_hostile_pth_is_refused_and_nothing_runs(tmp_path):
    sentinel = tmp_path / "SENTINEL"
    evil = _Hostile(os.system, f"touch {sentinel}")
    zipped = tmp_path / "zipped.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "x": evil}, zipped)
    raw = tmp_path / "legacy.pth"  # a bare pickle under a .pth name
    with open(raw, "wb") as f:
        pickle.dump({"x": evil}, f)
    for path in (zipped, raw):
        with pytest.raises(UserError) as e:
            read_weights_file(path)
        _one_sentence(str(e.value), path)
        assert "system" in str(e.value) and "refuses to run" in str(e.value)
    assert not sentinel.exists()


def test_plain_pickles_with_numpy_load(tmp_path):
    data = {"model": {"a": np.arange(6, dtype=np.float32).reshape(2, 3),
                      "b": np.float64(2.5), "c": np.arange(3, dtype=">f4")},
            "__author__": "resdet", "extra": [1, (2, 3), {"s"}, b"bytes"]}
    for protocol in (2, 4, 5):
        path = tmp_path / f"p{protocol}.pkl"
        with open(path, "wb") as f:
            pickle.dump(data, f, protocol=protocol)
        out = load_plain_pickle(path)
        np.testing.assert_array_equal(out["model"]["a"], data["model"]["a"])
        assert out["extra"] == data["extra"]


def test_numpy_inside_pth_loads(tmp_path):
    torch.save({"model": {"w": np.ones((2, 2), np.float32)}, "iteration": 3}, tmp_path / "n.pth")
    assert read_weights_file(tmp_path / "n.pth")["model"]["w"].shape == (2, 2)


def test_truncated_and_non_dict_pickles(tmp_path):
    good = tmp_path / "good.pkl"
    save_detectron2_pkl(build_backbone("resnet18").state_dict(), good)
    truncated = tmp_path / "truncated.pkl"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(UserError, match="not a readable weight pickle") as e:
        load_plain_pickle(truncated)
    _one_sentence(str(e.value), truncated)

    garbage = tmp_path / "garbage.pkl"
    garbage.write_bytes(b"this is not a pickle at all")
    with pytest.raises(UserError, match="not a readable weight pickle") as e:
        load_plain_pickle(garbage)
    _one_sentence(str(e.value), garbage)

    a_list = tmp_path / "list.pkl"
    with open(a_list, "wb") as f:
        pickle.dump([1, 2, 3], f)
    with pytest.raises(UserError, match="holds a pickled list, not a dict") as e:
        load_plain_pickle(a_list)
    _one_sentence(str(e.value), a_list)

    bad_pth = tmp_path / "bad.pth"
    bad_pth.write_bytes(b"PK\x03\x04 broken zip")
    with pytest.raises(UserError) as e:
        read_weights_file(bad_pth)
    _one_sentence(str(e.value), bad_pth)


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="does not exist") as e:
        load_weights(build_backbone("resnet18"), str(tmp_path / "nope.pkl"))
    _one_sentence(str(e.value), tmp_path / "nope.pkl")


def test_sha256_pinning(tmp_path):
    path = tmp_path / "w.pth"
    torch.save({"model": build_backbone("resnet18").state_dict()}, path)
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    assert resolve_weights(str(path), sha256=actual) == str(path)
    wrong = "0" * 64
    with pytest.raises(UserError) as e:
        resolve_weights(str(path), sha256=wrong)
    msg = str(e.value)
    assert msg.startswith("refusing weights") and wrong in msg and actual in msg
    with pytest.raises(UserError, match="refusing weights"):
        load_weights(build_backbone("resnet18"), str(path), sha256=wrong)


def test_torchvision_name_without_network(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(url, dst, *args, **kwargs):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(UserError) as e:
        resolve_weights("torchvision://resnet50")
    msg = str(e.value)
    assert "resnet50-0676ba61.pth" in msg and "download the file manually" in msg
    assert "\n" not in msg
    with pytest.raises(UserError, match="valid torchvision names: torchvision://resnet18"):
        resolve_weights("torchvision://resnet51")


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_torch_files_named_pkl_are_read_by_torch(tmp_path):
    data = {"model": {"stem.conv1.weight": torch.ones(2)}}
    torch.save(data, tmp_path / "zip.pkl")
    torch.save(data, tmp_path / "legacy.pkl", _use_new_zipfile_serialization=False)
    for name in ("zip.pkl", "legacy.pkl"):
        out = read_weights_file(tmp_path / name)
        torch.testing.assert_close(out["model"]["stem.conv1.weight"], torch.ones(2))
