"""resdet's training engine: launch, trainer, checkpoints, schedules (task-agnostic).

Used by pretraining (``resdet.pretrain``) and by the torchvision detection engine.
"""

from resdet.engine.checkpointer import Checkpointer
from resdet.engine.defaults import build_trainer, default_setup, per_process_batch, select_device
from resdet.engine.launch import default_argument_parser, launch
from resdet.engine.lr_schedule import LRSchedule, build_lr_schedule
from resdet.engine.optim import build_optimizer
from resdet.engine.sampler import InferenceSampler, InfiniteSampler
from resdet.engine.trainer import Trainer, TrainResult, move_to_device, seed_all, unwrap

__all__ = [
    "Checkpointer",
    "InferenceSampler",
    "InfiniteSampler",
    "LRSchedule",
    "TrainResult",
    "Trainer",
    "build_lr_schedule",
    "build_optimizer",
    "build_trainer",
    "default_argument_parser",
    "default_setup",
    "launch",
    "move_to_device",
    "per_process_batch",
    "seed_all",
    "select_device",
    "unwrap",
]
