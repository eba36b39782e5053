"""load_config: _BASE_ chains, opts, and one clear UserError sentence for each user mistake."""

import re

import pytest

from resdet.config import check_keys_honoured, dump_config, get_cfg, load_config
from resdet.errors import UserError


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def test_defaults_only_is_frozen():
    cfg = load_config(None)
    assert cfg.is_frozen()
    assert cfg == get_cfg()


def test_base_chain_merges_relative_to_each_file(tmp_path):
    write(tmp_path / "a" / "root.yaml", "SOLVER:\n  BASE_LR: 0.02\n  MAX_ITER: 10\nSEED: 3\n")
    write(tmp_path / "a" / "b" / "mid.yaml",
          "_BASE_: ../root.yaml\nSOLVER:\n  MAX_ITER: 20\n  STEPS: [5, 8]\n")
    leaf = write(tmp_path / "leaf.yaml",
                 "_BASE_: a/b/mid.yaml\nSOLVER:\n  MAX_ITER: 30\n"
                 "DATASETS:\n  TRAIN: ('shapes_train',)\n")
    cfg = load_config(leaf)
    assert cfg.SOLVER.BASE_LR == 0.02  # from root
    assert cfg.SEED == 3  # from root
    assert cfg.SOLVER.STEPS == (5, 8)  # from mid, list -> tuple as the default
    assert cfg.SOLVER.MAX_ITER == 30  # leaf wins
    assert cfg.DATASETS.TRAIN == ("shapes_train",)
    assert cfg.SOLVER.GAMMA == 0.1  # untouched default


def test_opts_override_file_and_parse_literals(tmp_path):
    path = write(tmp_path / "x.yaml", "SOLVER:\n  BASE_LR: 0.02\n")
    cfg = load_config(path, ["SOLVER.BASE_LR", "0.5", "INPUT.MIN_SIZE_TRAIN", "(640, 672)",
                             "MODEL.DEVICE", "cpu", "SOLVER.AMP.ENABLED", "True",
                             "SOLVER.MAX_ITER", 7])
    assert cfg.SOLVER.BASE_LR == 0.5
    assert cfg.INPUT.MIN_SIZE_TRAIN == (640, 672)
    assert cfg.MODEL.DEVICE == "cpu"
    assert cfg.SOLVER.AMP.ENABLED is True
    assert cfg.SOLVER.MAX_ITER == 7


def test_int_promoted_to_float_and_scientific_notation(tmp_path):
    path = write(tmp_path / "x.yaml", "SOLVER:\n  BASE_LR: 1\n  WEIGHT_DECAY: 1e-4\n")
    cfg = load_config(path)
    assert cfg.SOLVER.BASE_LR == 1.0 and type(cfg.SOLVER.BASE_LR) is float
    assert cfg.SOLVER.WEIGHT_DECAY == 1e-4 and type(cfg.SOLVER.WEIGHT_DECAY) is float


def test_string_key_keeps_literal_looking_text(tmp_path):
    cfg = load_config(None, ["OUTPUT_DIR", "2024"])
    assert cfg.OUTPUT_DIR == "2024"


def test_none_default_accepts_value():
    assert load_config(None, ["SOLVER.WEIGHT_DECAY_BIAS", "0.0"]).SOLVER.WEIGHT_DECAY_BIAS == 0.0


def test_unknown_key_in_file_suggests_nearest(tmp_path):
    path = write(tmp_path / "configs" / "x.yaml", "SOLVER:\n  BASE_LRR: 0.1\n")
    with pytest.raises(UserError) as e:
        load_config(path)
    assert str(e.value) == (
        f"Unknown config key 'SOLVER.BASE_LRR' in {path}; did you mean 'SOLVER.BASE_LR'?"
    )


def test_unknown_key_in_base_names_the_base_file(tmp_path):
    base = write(tmp_path / "base.yaml", "MODEL:\n  RESNETS:\n    DEPT: 101\n")
    leaf = write(tmp_path / "leaf.yaml", "_BASE_: base.yaml\n")
    with pytest.raises(UserError, match=re.escape(
            f"Unknown config key 'MODEL.RESNETS.DEPT' in {base}; "
            "did you mean 'MODEL.RESNETS.DEPTH'?")):
        load_config(leaf)


def test_unknown_key_in_opts_and_key_under_wrong_group():
    with pytest.raises(UserError) as e:
        load_config(None, ["MODEL.BASE_LR", "0.1"])
    assert str(e.value) == (
        "Unknown config key 'MODEL.BASE_LR' in the command line; did you mean 'SOLVER.BASE_LR'?"
    )
    with pytest.raises(UserError, match="Unknown config key 'NOPE.X' in the command line; remove"):
        load_config(None, ["NOPE.X", "1"])


def test_wrong_type_names_key_and_type(tmp_path):
    with pytest.raises(UserError) as e:
        load_config(None, ["SOLVER.MAX_ITER", "abc"])
    assert str(e.value) == (
        "Config key 'SOLVER.MAX_ITER' in the command line must be int, got str 'abc'."
    )
    path = write(tmp_path / "x.yaml", "SOLVER:\n  MAX_ITER: 1.5\n")
    with pytest.raises(UserError, match=re.escape(
            f"Config key 'SOLVER.MAX_ITER' in {path} must be int, got float 1.5.")):
        load_config(path)
    with pytest.raises(UserError, match="'SOLVER.STEPS' in the command line must be a list"):
        load_config(None, ["SOLVER.STEPS", "100"])
    with pytest.raises(UserError, match="'SOLVER.BASE_LR' .* must be float, got bool True"):
        load_config(None, ["SOLVER.BASE_LR", "True"])


def test_group_given_a_value():
    with pytest.raises(UserError, match="'SOLVER.AMP' in the command line is a group of keys"):
        load_config(None, ["SOLVER.AMP", "True"])


def test_resdet_choice_keys_are_checked():
    with pytest.raises(UserError, match="'SOLVER.AMP.DTYPE' .* must be one of 'bfloat16', "
                                        "'float16', got 'fp16'"):
        load_config(None, ["SOLVER.AMP.DTYPE", "fp16"])
    assert load_config(None, ["ENGINE", "torchvision"]).ENGINE == "torchvision"


def test_odd_number_of_opts():
    with pytest.raises(UserError, match="KEY VALUE pairs, got 3 items"):
        load_config(None, ["SOLVER.BASE_LR", "0.1", "SOLVER.MAX_ITER"])


def test_missing_file_and_missing_base(tmp_path):
    missing = str(tmp_path / "nope.yaml")
    with pytest.raises(UserError, match=re.escape(f"Config file '{missing}' does not exist")):
        load_config(missing)
    leaf = write(tmp_path / "leaf.yaml", "_BASE_: gone/base.yaml\n")
    base = str(tmp_path / "gone" / "base.yaml")
    with pytest.raises(UserError, match=re.escape(
            f"Config file '{base}' named by _BASE_ in '{leaf}' does not exist")):
        load_config(leaf)


def test_base_cycle(tmp_path):
    write(tmp_path / "a.yaml", "_BASE_: b.yaml\n")
    write(tmp_path / "b.yaml", "_BASE_: a.yaml\n")
    with pytest.raises(UserError, match="is its own _BASE_"):
        load_config(str(tmp_path / "a.yaml"))


def test_bad_yaml_names_file_and_line(tmp_path):
    path = write(tmp_path / "bad.yaml", "SOLVER:\n  BASE_LR: 0.1\n  STEPS: [1, 2\nSEED: 1\n")
    with pytest.raises(UserError, match=re.escape(f"Config file '{path}' is not valid YAML at "
                                                  "line ")) as e:
        load_config(path)
    assert re.search(r"at line [34] ", str(e.value))
    not_mapping = write(tmp_path / "list.yaml", "- a\n- b\n")
    with pytest.raises(UserError, match="must hold a mapping"):
        load_config(not_mapping)


def test_empty_file_is_defaults(tmp_path):
    assert load_config(write(tmp_path / "e.yaml", "")) == get_cfg()


def test_base_cfg_is_not_changed():
    base = get_cfg()
    cfg = load_config(None, ["SEED", "5"], base_cfg=base)
    assert cfg.SEED == 5 and base.SEED == -1


def test_cfgnode_merge_methods_are_strict(tmp_path):
    cfg = get_cfg()
    cfg.merge_from_list(["SOLVER.BASE_LR", "0.3"])
    assert cfg.SOLVER.BASE_LR == 0.3
    with pytest.raises(UserError, match="did you mean 'SOLVER.BASE_LR'"):
        cfg.merge_from_list(["SOLVER.BASE_LRR", "0.3"])
    path = write(tmp_path / "x.yaml", "SEED: 9\n")
    cfg.merge_from_file(path)
    assert cfg.SEED == 9


def test_dump_roundtrip(tmp_path):
    cfg = load_config(None, ["SOLVER.STEPS", "(10, 20)", "DATASETS.TRAIN", "('a', 'b')",
                             "SOLVER.AMP.DTYPE", "float16"])
    out = dump_config(cfg, str(tmp_path / "out" / "config.yaml"))
    assert (tmp_path / "out" / "config.yaml").is_file()
    assert list((tmp_path / "out").iterdir()) == [tmp_path / "out" / "config.yaml"]
    again = load_config(out)
    assert again == cfg
    assert again.SOLVER.STEPS == (10, 20)


def test_check_keys_honoured():
    cfg = load_config(None, ["SOLVER.BASE_LR", "0.1", "MODEL.ROI_BOX_HEAD.NUM_CONV", "2",
                             "MODEL.FPN.NORM", "GN"])
    check_keys_honoured(cfg, {"SOLVER.", "MODEL.ROI_BOX_HEAD.NUM_CONV", "MODEL.FPN"},
                        engine="torchvision")
    with pytest.raises(UserError) as e:
        check_keys_honoured(cfg, {"SOLVER"}, engine="torchvision")
    assert str(e.value) == (
        "Config key 'MODEL.FPN.NORM' = 'GN' is not supported by the torchvision engine; "
        "remove it or use --engine detectron2 (also unsupported: MODEL.ROI_BOX_HEAD.NUM_CONV)."
    )
    # A value equal to its default (list given for a tuple, int for a float) is not "set".
    same = load_config(None, ["SOLVER.STEPS", "[30000]", "SOLVER.GAMMA", "0.1",
                              "MODEL.RPN.NMS_THRESH", "0.7"])
    check_keys_honoured(same, set(), engine="torchvision")


def test_unknown_engine_and_unwritable_dump(tmp_path):
    with pytest.raises(UserError, match="Unknown engine 'tv'; use one of auto, detectron2"):
        load_config(None, engine="tv")
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UserError, match="Cannot write the config to .*OUTPUT_DIR is writable"):
        dump_config(get_cfg(), str(blocker / "config.yaml"))
