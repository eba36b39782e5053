"""Compact record lists (resdet.data.records): same dicts as the list, in workers too."""

import copy
import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from resdet.data.records import ColumnRecords, SerializedList, compact_records
from resdet.pretrain.data import EvalDataset, Normalizer, TrainDataset


def _imagenet(n=7):
    return [{"file_name": f"datasets/imagenet/train/n{i % 3:08d}/img_{i}_é.JPEG",
             "label": i % 3, "image_id": i} for i in range(n)]


def _coco(n=5):
    return [{"file_name": f"coco/train2017/{i:012d}.jpg", "height": 480, "width": 640 + i,
             "image_id": 100 + i,
             "annotations": [{"iscrowd": k % 2, "bbox": [1.5 * k, 2.0, 30.25, 40.0],
                              "bbox_mode": 1, "category_id": k} for k in range(i)]}
            for i in range(n)]


def test_class_folder_records_become_columns_with_the_same_dicts():
    recs = _imagenet()
    c = compact_records(recs)
    assert isinstance(c, ColumnRecords)
    assert len(c) == 7 and list(c) == recs and c.to_list() == recs
    assert c[-1] == recs[-1] and c[np.int64(2)] == recs[2]
    assert list(c[3]) == ["file_name", "label", "image_id"]
    assert c.column("label").tolist() == [0, 1, 2, 0, 1, 2, 0]
    with pytest.raises(IndexError, match="record index 7 out of range for 7 records"):
        c[7]
    item = c[0]
    item["label"] = 99  # a fresh dict each time
    assert c[0]["label"] == 0


def test_detection_and_cifar_records_are_pickled_into_one_buffer():
    recs = _coco()
    s = compact_records(recs)
    assert isinstance(s, SerializedList) and list(s) == recs and s[-2] == recs[-2]
    s[1]["annotations"].clear()
    assert s[1] == recs[1]
    cifar = [{"image": np.full((32, 32, 3), i, np.uint8), "label": i, "image_id": i}
             for i in range(3)]
    c = compact_records(cifar)
    assert isinstance(c, SerializedList)
    np.testing.assert_array_equal(c[2]["image"], cifar[2]["image"])
    # mixed key sets, bools and floats are not columns
    for odd in ([{"a": "x", "b": 1}, {"a": "y"}], [{"a": True}], [{"a": 1.5}]):
        assert isinstance(compact_records(odd), SerializedList)
    assert compact_records(c) is c


@pytest.mark.parametrize("make", [_imagenet, _coco])
def test_survives_pickling(make):
    recs = make()
    c = compact_records(recs)
    assert list(pickle.loads(pickle.dumps(c))) == recs
    assert list(copy.deepcopy(c)) == recs


class _Echo(Dataset):
    def __init__(self, records):
        self.records = compact_records(records)

    def __len__(self):
        return len(self.records)

    def __getitem__(self, i):
        return self.records[i]


@pytest.mark.parametrize("make", [_imagenet, _coco])
def test_forked_workers_read_the_same_dicts(make):
    recs = make(40)
    loader = DataLoader(_Echo(recs), batch_size=None, num_workers=2,
                        multiprocessing_context="fork")
    assert list(loader) == recs


def test_pretraining_datasets_hold_compact_records():
    recs = _imagenet(4)
    norm = Normalizer(torch.zeros(3, 1, 1), torch.ones(3))
    train = TrainDataset(recs, norm, augmentation="scale", crop=8)
    test = EvalDataset(recs, mode="center", crop=8, resize=8)
    assert isinstance(train.records, ColumnRecords) and list(train.records) == recs
    assert isinstance(test.records, ColumnRecords) and list(test.records) == recs
