"""A stand-in trainable for trying schedulers and searchers without training anything.

Ray Tune's examples import ``MyTrainableClass`` from ``ray.tune.utils.mock_trainable``;
``dasktune port`` points them here.  Its "reward" rises along a tanh curve whose
steepness is set by ``config["width"]`` and whose ceiling is ``config["height"]``,
so configs differ in a way schedulers can tell apart early.

>>> from dasktune.utils.mock_trainable import MyTrainableClass
>>> trainable = MyTrainableClass({"width": 2, "height": 10})
>>> [round(trainable.step()["episode_reward_mean"], 2) for _ in range(3)]
[4.62, 7.62, 9.05]
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any

from dasktune.trainable.trainable import Trainable

#: The config key that makes a trial fail on purpose (after its first step), to try retries.
MOCK_ERROR_KEY = "mock_error"
MOCK_TRAINABLE_NAME = "mock_trainable"
_STATE_FILE = "mock_state.json"


class MyTrainableClass(Trainable):
    """A trainable whose ``episode_reward_mean`` follows ``height * tanh(step / width)``.

    Config keys (all optional): ``width`` (default 1), ``height`` (default 1),
    ``sleep`` (seconds to wait in each step, to look like work), ``mock_error``
    (fail every step after the first, until the trial was restored from a
    checkpoint) and ``persistent_error`` (keep failing after a restore too).
    """

    def setup(self, config: dict[str, Any], **params: Any) -> None:
        self.steps_done = 0
        self.was_restored = False

    def step(self) -> dict[str, Any]:
        config = self.config
        failing = config.get(MOCK_ERROR_KEY, False) and self.steps_done > 0
        if failing and (config.get("persistent_error", False) or not self.was_restored):
            raise RuntimeError(f"MyTrainableClass fails on purpose at step {self.steps_done}")
        pause = config.get("sleep", 0)
        if pause > 0:
            time.sleep(pause)
        self.steps_done += 1
        width = config.get("width", 1) or 1
        reward = math.tanh(self.steps_done / width) * config.get("height", 1)
        return {"episode_reward_mean": float(reward)}

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        with open(os.path.join(checkpoint_dir, _STATE_FILE), "w") as f:
            json.dump({"steps_done": self.steps_done}, f)

    def load_checkpoint(self, checkpoint_dir: str) -> None:
        with open(os.path.join(checkpoint_dir, _STATE_FILE)) as f:
            self.steps_done = json.load(f)["steps_done"]
        self.was_restored = True
