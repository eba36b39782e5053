"""A user's own COCO- and VOC-format datasets by name: the DATASETS.CUSTOM config block, the
Python form (register_coco_instances / register_pascal_voc) and names registered in Detectron2's
own catalog, each usable where a builtin name is, with the evaluator that fits (issue 12)."""

import json
import os
import subprocess
import sys

import pytest
import torch
import torchvision

from resdet.config import get_cfg, load_config
from resdet.data import catalog
from resdet.data.custom import (
    register_coco_instances,
    register_custom_datasets,
    register_pascal_voc,
)
from resdet.errors import UserError
from resdet.evaluation import COCOEvaluator, PascalVOCEvaluator, build_evaluator
from tests.custom_dataset_files import write_coco, write_voc


@pytest.fixture(autouse=True)
def _forget_registrations(monkeypatch):
    """Names registered by a test are gone after it (the catalog is process-wide)."""
    from resdet.data import custom

    monkeypatch.setattr(catalog, "_REGISTRY", dict(catalog._REGISTRY))
    monkeypatch.setattr(custom, "_SPECS", {})


def _perfect(dicts):
    outs = []
    for d in dicts:
        boxes = []
        for a in d["annotations"]:
            x0, y0, x1, y1 = a["bbox"]
            if a["bbox_mode"] == 1:  # XYWH
                x1, y1 = x0 + x1, y0 + y1
            boxes.append([x0, y0, x1, y1])
        outs.append({"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                     "scores": torch.ones(len(boxes)),
                     "labels": torch.tensor([a["category_id"] for a in d["annotations"]])})
    return outs


def _custom_config(tmp_path):
    """my.yaml declaring a COCO set (cfg_train) and a VOC set (cfg_val) under DATASETS.CUSTOM."""
    ann = write_coco(tmp_path / "c")
    voc = write_voc(tmp_path / "v")
    cfg_file = tmp_path / "my.yaml"
    cfg_file.write_text(
        "DATASETS:\n  CUSTOM:\n"
        f"    cfg_train: {{FORMAT: coco, JSON_FILE: {ann}, IMAGE_ROOT: {tmp_path}/c/imgs}}\n"
        f"    cfg_val: {{FORMAT: voc, ROOT: {voc}, SPLIT: val, CLASSES: [cat, dog]}}\n"
        "  TRAIN: ('cfg_train',)\n  TEST: ('cfg_val',)\n")
    return cfg_file


def test_config_block_registers_coco_and_voc_sets(tmp_path):
    cfg_file = _custom_config(tmp_path)
    cfg = load_config(str(cfg_file))
    assert register_custom_datasets(cfg) == ["cfg_train", "cfg_val"]
    assert register_custom_datasets(cfg) == ["cfg_train", "cfg_val"]  # again: harmless
    meta = catalog.get_metadata("cfg_train")
    assert meta["thing_classes"] == ["cat", "dog"]  # the file's categories sorted by id
    assert meta["thing_dataset_id_to_contiguous_id"] == {3: 0, 7: 1}
    dicts = catalog.get_dataset_dicts("cfg_train")
    assert [d["image_id"] for d in dicts] == [1, 2, 3]
    assert [a["category_id"] for d in dicts for a in d["annotations"]] == [0, 1, 0]
    ev = build_evaluator("cfg_train")
    assert isinstance(ev, COCOEvaluator)
    ev.process(dicts, _perfect(dicts))
    res = ev.evaluate()["bbox"]
    assert res["AP"] == pytest.approx(100.0) and set(res) >= {"AP-cat", "AP-dog"}

    voc_meta = catalog.get_metadata("cfg_val")
    assert (voc_meta["evaluator_type"], voc_meta["thing_classes"], voc_meta["year"]) == (
        "pascal_voc", ["cat", "dog"], 2012)
    vdicts = catalog.get_dataset_dicts("cfg_val")
    assert [(d["image_id"], [a["category_id"] for a in d["annotations"]]) for d in vdicts] == [
        ("a", [0]), ("b", [1])]
    vev = build_evaluator("cfg_val")
    assert isinstance(vev, PascalVOCEvaluator)
    vev.process(vdicts, _perfect(vdicts))
    assert vev.evaluate()["bbox"]["AP50"] == pytest.approx(100.0)


@pytest.mark.parametrize("entry,message", [
    ({"FORMAT": "yolo", "ROOT": "x"}, "DATASETS.CUSTOM.bad.FORMAT must be 'coco' or 'voc', got "
     "'yolo'."),
    ({"FORMAT": "coco", "JSON_FILE": "a.json"}, "DATASETS.CUSTOM.bad needs IMAGE_ROOT (FORMAT "
     "coco takes JSON_FILE, IMAGE_ROOT)."),
    ({"FORMAT": "voc", "ROOT": "r", "SPLIT": "val", "CLASSES": ["a"], "CLASS": 1},
     "DATASETS.CUSTOM.bad.CLASS is not a key of a voc dataset; its keys are FORMAT, ROOT, SPLIT, "
     "CLASSES, YEAR."),
    ({"FORMAT": "voc", "ROOT": "r", "SPLIT": "val", "CLASSES": "cat"},
     "DATASETS.CUSTOM.bad.CLASSES must be a list of class names, got 'cat'."),
])
def test_config_block_errors_name_the_key(entry, message):
    cfg = load_config(None, ["DATASETS.CUSTOM", repr({"bad": entry})])
    with pytest.raises(UserError) as e:
        register_custom_datasets(cfg)
    assert str(e.value) == message


def test_builtin_names_and_missing_files(tmp_path):
    with pytest.raises(UserError, match=r"^Dataset name 'coco_2017_val' is already a builtin "
                       r"dataset; give your dataset another name\.$"):
        register_coco_instances("coco_2017_val", {}, "a.json", "imgs")
    register_coco_instances("nowhere_val", {}, str(tmp_path / "no.json"), str(tmp_path))
    with pytest.raises(UserError) as e:
        catalog.get_dataset_dicts("nowhere_val")
    assert str(e.value) == (f"Dataset nowhere_val is not on disk: {tmp_path / 'no.json'} does "
                            "not exist; fix the path it was registered with (DATASETS.CUSTOM or "
                            "register_*() call).")
    assert get_cfg().DATASETS.CUSTOM == {}  # the default: no custom sets


def test_python_form_and_its_evaluation(tmp_path):
    ann = write_coco(tmp_path)
    register_coco_instances("py_val", {}, ann, str(tmp_path / "imgs"))
    register_coco_instances("py_val", {}, ann, str(tmp_path / "imgs"))  # a notebook re-run
    dicts = catalog.get_dataset_dicts("py_val")
    assert len(dicts) == 3 and dicts[0]["file_name"] == str(tmp_path / "imgs" / "img1.jpg")
    ev = COCOEvaluator("py_val")
    ev.process(dicts, [{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0),
                        "labels": torch.zeros(0, dtype=torch.long)} for _ in dicts])
    assert ev.evaluate()["bbox"]["AP"] == 0.0
    voc = write_voc(tmp_path / "v", classes=("cow", "cow"))
    register_pascal_voc("py_voc", voc, "val", 2007, ["cow"])
    assert catalog.get_metadata("py_voc")["year"] == 2007  # 11-point AP
    assert len(catalog.get_dataset_dicts("py_voc")) == 2


def test_names_registered_in_detectron2_are_found(tmp_path):
    """b20: a name registered with Detectron2's own register_coco_instances is usable by resdet's
    catalog and evaluators (so on the torchvision engine) once detectron2 is imported."""
    pytest.importorskip("detectron2")
    from detectron2.data import DatasetCatalog
    from detectron2.data.datasets import register_coco_instances as d2_register

    ann = write_coco(tmp_path)
    d2_register("d2_user_val", {}, ann, str(tmp_path / "imgs"))
    try:
        assert "d2_user_val" not in catalog.list_datasets()
        assert catalog.get_metadata("d2_user_val")["thing_classes"] == ["cat", "dog"]
        dicts = catalog.get_dataset_dicts("d2_user_val")
        assert [len(d["annotations"]) for d in dicts] == [1, 1, 1]
        ev = build_evaluator("d2_user_val")
        ev.process(dicts, _perfect(dicts))
        assert ev.evaluate()["bbox"]["AP"] == pytest.approx(100.0)
        # Detectron2's own loader is left as it was
        assert len(DatasetCatalog.get("d2_user_val")) == 3
    finally:
        DatasetCatalog.remove("d2_user_val")
    with pytest.raises(UserError, match="^Unknown dataset 'd2_user_val'"):
        catalog.get_metadata("d2_user_val")


def _eval_only(tmp_path, script, extra, engine="torchvision"):
    """tools/train_net.py --engine ENGINE --eval-only on b20's set (3 images, 96x72) with a
    random ResNet-18 backbone; returns (completed process, eval_results.json)."""
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "r18.pth")
    out = tmp_path / "out"
    cmd = [sys.executable, script or os.path.join(repo, "tools", "train_net.py"), "--engine",
           engine, "--eval-only", "--config", os.path.join(repo, "configs",
                                                                   "quickstart.yaml"),
           "MODEL.DEVICE", "cpu", "DATALOADER.NUM_WORKERS", "0", "INPUT.MIN_SIZE_TEST", "64",
           "INPUT.MAX_SIZE_TEST", "128", "MODEL.ROI_HEADS.NUM_CLASSES", "2", "DATASETS.TRAIN",
           "()", "DATASETS.TEST", "('my_val',)", "MODEL.WEIGHTS", str(tmp_path / "r18.pth"),
           "OUTPUT_DIR", str(out), *extra]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                       env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    with open(out / "eval_results.json") as f:
        return r, json.load(f)


@pytest.mark.slow
def test_config_form_on_the_torchvision_engine(tmp_path):
    ann = write_coco(tmp_path)
    custom = repr({"my_val": {"FORMAT": "coco", "JSON_FILE": ann,
                              "IMAGE_ROOT": str(tmp_path / "imgs")}})
    _, results = _eval_only(tmp_path, None, ["DATASETS.CUSTOM", custom])
    assert list(results) == ["my_val"]
    assert set(results["my_val"]["bbox"]) == {"AP", "AP50", "AP75", "APs", "APm", "APl",
                                              "AP-cat", "AP-dog"}


@pytest.mark.slow
def test_case_b20_detectron2_registration_on_the_torchvision_engine(tmp_path):
    """b20: Detectron2's register_coco_instances in a wrapper, then resdet's train_net on the
    torchvision engine (which said "Unknown dataset 'my_val'")."""
    pytest.importorskip("detectron2")
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ann = write_coco(tmp_path)
    wrapper = tmp_path / "wrapper.py"
    wrapper.write_text(
        "import runpy, sys\n"
        "from detectron2.data.datasets import register_coco_instances\n"
        f"register_coco_instances('my_val', {{}}, {ann!r}, {str(tmp_path / 'imgs')!r})\n"
        "sys.argv = ['train_net.py'] + sys.argv[1:]\n"
        f"runpy.run_path({os.path.join(repo, 'tools', 'train_net.py')!r}, run_name='__main__')\n")
    r, results = _eval_only(tmp_path, str(wrapper), [])
    assert "Evaluated my_val" in r.stdout + r.stderr
    assert set(results["my_val"]["bbox"]) >= {"AP", "AP-cat", "AP-dog"}


@pytest.mark.slow
def test_python_form_on_the_detectron2_engine(tmp_path):
    """resdet's register_coco_instances in a script, then the Detectron2 engine: the name reaches
    Detectron2's catalog through resdet's."""
    pytest.importorskip("detectron2")
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ann = write_coco(tmp_path)
    wrapper = tmp_path / "wrapper.py"
    wrapper.write_text(
        "import runpy, sys\n"
        "from resdet.data.custom import register_coco_instances\n"
        f"register_coco_instances('my_val', {{}}, {ann!r}, {str(tmp_path / 'imgs')!r})\n"
        "sys.argv = ['train_net.py'] + sys.argv[1:]\n"
        f"runpy.run_path({os.path.join(repo, 'tools', 'train_net.py')!r}, run_name='__main__')\n")
    _, results = _eval_only(tmp_path, str(wrapper), [], engine="detectron2")
    assert {"AP", "AP50", "AP-cat", "AP-dog"} <= set(results["my_val"]["bbox"])


def test_check_py_takes_the_config(tmp_path):
    cfg_file = _custom_config(tmp_path)
    tool = os.path.join(os.path.dirname(__file__), "..", "..", "datasets", "check.py")
    env = dict(os.environ, PYTHONPATH=os.path.abspath(os.path.join(tool, "..", "..")))
    r = subprocess.run([sys.executable, tool, "--config", str(cfg_file)], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    ok = [x for x in r.stdout.splitlines() if ": ok: " in x]
    assert [x.split(":")[0] for x in ok] == ["cfg_train", "cfg_val"]
    one = subprocess.run([sys.executable, tool, "--config", str(cfg_file), "cfg_val"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert one.returncode == 0 and one.stdout.strip().splitlines()[-1].startswith("ok: ")
    bad = subprocess.run([sys.executable, tool, "cfg_val"], env=env, capture_output=True,
                         text=True, timeout=300)
    assert bad.returncode == 2 and "cfg_val" in bad.stderr


def test_visualize_data_takes_custom_names(tmp_path):
    cfg_file = _custom_config(tmp_path)
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
    r = subprocess.run([sys.executable, os.path.join(root, "tools", "visualize_data.py"),
                        "--config", str(cfg_file), "--source", "annotation", "--engine",
                        "torchvision", "--output-dir", str(tmp_path / "vis"), "--num", "1"],
                       env=dict(os.environ, PYTHONPATH=root), capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    with open(tmp_path / "vis" / "records.json") as f:
        records = json.load(f)
    assert [(r["file_name"], r["classes"]) for r in records["images"]] == [
        (f"{tmp_path}/c/imgs/img1.jpg", ["cat"])]
