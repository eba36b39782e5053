"""Class-folder listing equals torchvision's ImageFolder (classes, samples) on a corpus of trees;
where resdet departs (hidden folders, AppleDouble files, empty classes) it says so in one sentence.
"""

import importlib.util
import logging
import os

import pytest
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS

from resdet.data import get_dataset_dicts, get_metadata
from resdet.data.classification import (
    IMAGE_EXTENSIONS,
    list_class_folders,
    scan_class_folders,
)
from resdet.errors import UserError
from tests.pretrain.tiny_cls_data import make_b22_folders

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _touch(path: str, data: bytes = b"x") -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def _tree(root: str, files) -> str:
    for rel in files:
        _touch(os.path.join(root, rel))
    return root


# Each builder makes a tree under the given folder; ImageFolder reads no pixels at construction,
# so the files need not be images.
def mixed_case_extensions(d):
    _tree(d, ["b/1.JPEG", "b/2.Jpg", "b/3.png", "b/4.PNG", "b/5.webp", "b/6.TIFF", "b/7.pgm",
              "b/8.txt", "b/9.jpeg.txt", "b/noext", "b/.DS_Store", "a/x.bmp", "a/y.ppm",
              "a/z.tif", "a/Thumbs.db", "stray.jpg", "notes.txt"])


def nested_files(d):
    _tree(d, ["n01/top.jpg", "n01/sub/deep.jpg", "n01/sub/deeper/deepest.JPG", "n01/a-b/x.jpg",
              "n01/a/b/y.jpg", "n01/a/z.jpg", "n01/.hidden/in_hidden_sub.jpg", "n01/.dot.jpg",
              "n02/only/nested/once.png", "n03/z.jpg", "n03/A.jpg", "n03/_u.jpg"])


def symlinks(d):
    outside = os.path.join(d, "..", "outside")
    _tree(outside, ["cls/o1.jpg", "cls/o2.jpg", "sub/s1.jpg", "file.jpg"])
    _tree(d, ["real/r.jpg"])
    os.symlink(os.path.abspath(os.path.join(outside, "cls")), os.path.join(d, "linked_class"))
    os.symlink(os.path.abspath(os.path.join(outside, "sub")), os.path.join(d, "real", "lsub"))
    os.symlink(os.path.abspath(os.path.join(outside, "file.jpg")), os.path.join(d, "real", "f.jpg"))
    os.symlink("/nonexistent/broken.jpg", os.path.join(d, "real", "broken.jpg"))
    os.symlink("/nonexistent/dir", os.path.join(d, "broken_dir_link"))  # not a folder: no class


def hidden_empty_folder(d):  # Jupyter's checkpoint folder: ImageFolder refuses the empty class
    _tree(d, ["n01/a.jpg", "n02/b.jpg", ".ipynb_checkpoints/x-checkpoint.ipynb"])


def hidden_folder_with_images(d):  # ImageFolder makes it a class; resdet refuses
    _tree(d, ["n01/a.jpg", ".cache/thumb.jpg"])


def empty_class(d):
    _tree(d, ["n01/a.jpg", "n02/readme.txt"])
    os.makedirs(os.path.join(d, "n03"))


def appledouble(d):
    _tree(d, ["n01/a.jpg", "n01/._a.jpg", "n02/b.JPEG", "n02/sub/._b.JPEG", "n02/._notes.txt"])


def appledouble_only(d):
    _tree(d, ["n01/a.jpg", "n02/._b.jpg"])


def no_class_folders(d):
    _tree(d, ["a.jpg", "b.jpg"])


def unreadable_class(d):
    _tree(d, ["n01/a.jpg", "n02/b.jpg"])
    os.chmod(os.path.join(d, "n02"), 0)


def _imagefolder(d):
    try:
        ds = ImageFolder(d)
    except (FileNotFoundError, OSError) as e:
        return e
    return ds.classes, [tuple(s) for s in ds.samples]


def _resdet(d):
    try:
        listing = list_class_folders(d, "t")
    except UserError as e:
        return e
    records, classes = scan_class_folders(d, "t")
    # the records are the listing, in order
    assert [(r["file_name"], r["label"]) for r in records] == listing.samples
    assert classes == listing.classes
    return listing.classes, listing.samples


def test_image_extensions_are_imagefolders():
    assert IMAGE_EXTENSIONS == tuple(IMG_EXTENSIONS)


@pytest.mark.parametrize("build", [mixed_case_extensions, nested_files, symlinks])
def test_same_classes_and_samples_as_imagefolder(tmp_path, build):
    d = str(tmp_path / "train")
    os.makedirs(d)
    build(d)
    ours, theirs = _resdet(d), _imagefolder(d)
    assert not isinstance(theirs, Exception), theirs
    assert ours == theirs


def test_corpus_counts(tmp_path):
    """The corpus exercises what it claims (guards the comparison against vacuous trees)."""
    expected = {mixed_case_extensions: (["a", "b"], 10), nested_files: (["n01", "n02", "n03"], 12),
                symlinks: (["linked_class", "real"], 6)}
    for build, (classes, n) in expected.items():
        d = str(tmp_path / build.__name__ / "train")
        os.makedirs(d)
        build(d)
        got_classes, samples = _resdet(d)
        assert (got_classes, len(samples)) == (classes, n)
    # deep, hidden-subfolder, hidden-file and symlinked samples are among them
    names = {os.path.relpath(p, str(tmp_path)) for p, _ in _resdet(
        str(tmp_path / "nested_files" / "train"))[1]}
    assert {"nested_files/train/n01/sub/deeper/deepest.JPG",
            "nested_files/train/n01/.hidden/in_hidden_sub.jpg",
            "nested_files/train/n01/.dot.jpg"} <= names
    linked = [os.path.relpath(p, str(tmp_path)) for p, _ in _resdet(
        str(tmp_path / "symlinks" / "train"))[1]]
    assert linked == ["symlinks/train/linked_class/o1.jpg", "symlinks/train/linked_class/o2.jpg",
                      "symlinks/train/real/broken.jpg", "symlinks/train/real/f.jpg",
                      "symlinks/train/real/r.jpg", "symlinks/train/real/lsub/s1.jpg"]


def test_hidden_empty_folder_is_not_a_class(tmp_path):
    d = str(tmp_path / "train")
    hidden_empty_folder(d)
    assert isinstance(_imagefolder(d), FileNotFoundError)  # ImageFolder: ".ipynb_checkpoints"
    listing = list_class_folders(d, "t")
    assert listing.classes == ["n01", "n02"]
    assert listing.samples == [(os.path.join(d, "n01", "a.jpg"), 0),
                               (os.path.join(d, "n02", "b.jpg"), 1)]
    assert listing.hidden_skipped == [os.path.join(d, ".ipynb_checkpoints")]
    # equal to ImageFolder on the tree without the hidden folder
    os.remove(os.path.join(d, ".ipynb_checkpoints", "x-checkpoint.ipynb"))
    os.rmdir(os.path.join(d, ".ipynb_checkpoints"))
    assert _imagefolder(d) == (listing.classes, listing.samples)


def test_hidden_folder_with_images_is_refused(tmp_path):
    d = str(tmp_path / "train")
    hidden_folder_with_images(d)
    assert _imagefolder(d)[0] == [".cache", "n01"]
    with pytest.raises(UserError) as e:
        list_class_folders(d, "imagenet_train")
    assert str(e.value) == (
        f"Dataset imagenet_train: the hidden folder {os.path.join(d, '.cache')} holds 1 images; "
        "resdet takes no hidden folder as a class (torchvision's ImageFolder would), so rename "
        "it without the leading '.' to make it a class, or move it out of the dataset.")


@pytest.mark.parametrize("build,empty", [(empty_class, ["n02", "n03"]),
                                         (appledouble_only, ["n02"])])
def test_class_without_images_is_an_error_naming_it(tmp_path, build, empty):
    d = str(tmp_path / "train")
    build(d)
    theirs = _imagefolder(d)
    if build is empty_class:
        assert isinstance(theirs, FileNotFoundError) and "n02, n03" in str(theirs)
    with pytest.raises(UserError) as e:
        list_class_folders(d, "imagenet_train")
    shown = ", ".join(os.path.join(d, c) for c in empty)
    assert str(e.value) == (
        f"Dataset imagenet_train: {len(empty)} class folder(s) hold no images: {shown}; "
        "torchvision's ImageFolder refuses empty classes too, so add images "
        f"({', '.join(IMAGE_EXTENSIONS)}) or remove the folder(s).")


def test_appledouble_files_are_skipped(tmp_path, caplog):
    d = str(tmp_path / "train")
    appledouble(d)
    classes, samples = _imagefolder(d)
    listing = list_class_folders(d, "t")
    assert listing.classes == classes
    assert listing.samples == [s for s in samples if not os.path.basename(s[0]).startswith("._")]
    assert listing.samples == [(os.path.join(d, "n01", "a.jpg"), 0),
                               (os.path.join(d, "n02", "b.JPEG"), 1)]
    assert listing.appledouble == [os.path.join(d, "n01", "._a.jpg"),
                                   os.path.join(d, "n02", "sub", "._b.JPEG")]


def test_no_class_folders(tmp_path):
    d = str(tmp_path / "train")
    no_class_folders(d)
    assert isinstance(_imagefolder(d), FileNotFoundError)
    with pytest.raises(UserError, match=r"holds no class folders; expected "):
        list_class_folders(d, "t")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any folder")
def test_unreadable_class_folder(tmp_path):
    d = str(tmp_path / "train")
    unreadable_class(d)
    try:
        assert isinstance(_imagefolder(d), FileNotFoundError)
        with pytest.raises(UserError, match=r"some cannot be read: check their permissions"):
            list_class_folders(d, "t")
    finally:
        os.chmod(os.path.join(d, "n02"), 0o755)


def _check_py(name, capsys):
    """datasets/check.py's main in this process: (exit code, stdout lines)."""
    spec = importlib.util.spec_from_file_location("check_py", os.path.join(ROOT, "datasets",
                                                                           "check.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    capsys.readouterr()
    code = module.main([name])
    return code, capsys.readouterr().out.strip().splitlines()


def test_b22_hidden_class_folder(tmp_path, monkeypatch, capsys, caplog):
    """Case b22: the hidden folder is not class 0; three classes, labels by n01, n02, n03."""
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    make_b22_folders(str(tmp_path))
    assert get_metadata("imagenet_train")["classes"] == ["n01", "n02", "n03"]
    recs = get_dataset_dicts("imagenet_train")
    assert [(os.path.basename(r["file_name"]), r["label"]) for r in recs] == [
        ("n01_0.JPEG", 0), ("n01_1.JPEG", 0), ("n02_0.JPEG", 1), ("n02_1.JPEG", 1),
        ("n03_0.JPEG", 2), ("n03_1.JPEG", 2)]
    caplog.set_level(logging.WARNING)
    assert _check_py("imagenet_train", capsys) == (0, ["ok: 6 images, 3 classes"])
    hidden = os.path.join(str(tmp_path), "imagenet", "train", ".ipynb_checkpoints")
    assert f"imagenet_train: hidden folder(s) {hidden} hold no images and are not classes." \
        in caplog.messages


def test_check_py_names_appledouble_files_and_empty_classes(tmp_path, monkeypatch, capsys):
    from PIL import Image

    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    train = os.path.join(str(tmp_path), "imagenet", "train")
    for c in ("n01", "n02"):
        os.makedirs(os.path.join(train, c))
        Image.new("RGB", (12, 10)).save(os.path.join(train, c, "a.JPEG"))
    _touch(os.path.join(train, "n02", "._a.JPEG"), b"\x00\x05\x16\x07")
    ad = os.path.join(train, "n02", "._a.JPEG")
    assert _check_py("imagenet_train", capsys) == (1, [
        f"{ad} is a macOS AppleDouble file, not an image; it is skipped (delete such files: "
        "find <dataset folder> -name '._*' -delete)",
        "imagenet_train: 1 problem(s) in 2 images, 2 classes"])
    os.makedirs(os.path.join(train, "n03"))
    with pytest.raises(UserError) as e:  # check.py prints it as "error: ..." and exits with 2
        _check_py("imagenet_train", capsys)
    assert str(e.value) == (
        f"Dataset imagenet_train: 1 class folder(s) hold no images: "
        f"{os.path.join(train, 'n03')}; torchvision's ImageFolder refuses empty classes too, so "
        f"add images ({', '.join(IMAGE_EXTENSIONS)}) or remove the folder(s).")


def test_unlistable_split_folder_is_one_sentence(tmp_path, monkeypatch):
    d = str(tmp_path / "train")
    _tree(d, ["n01/a.jpg"])
    real_scandir = os.scandir

    def scandir(path):
        if os.path.abspath(path) == d:
            raise PermissionError(13, "Permission denied", path)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(UserError) as e:
        list_class_folders(d, "t")
    assert str(e.value) == (f"Cannot list the dataset folder {d} (Permission denied); check its "
                            "permissions.")
