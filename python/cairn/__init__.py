"""cairn: self-hosted experiment tracking with W&B's run API.

```python
import cairn as wandb

run = wandb.init(entity="nico", project="awesome-project", config={"learning_rate": 0.01})
run.log({"accuracy": 0.9, "loss": 0.1})
run.finish()
```
"""

from . import errors, plot
from ._core import __version__
from .api import Api
from .artifacts import Artifact
from .media import Audio, Histogram, Html, Image, Table, Video
from .sdk import AlertLevel, Run, Settings, alert, define_metric, finish, init, log, log_code, login, mark_preempting, require, restore, save, setup, teardown, termerror, termlog, termwarn, unwatch, watch
from .sdk import _Preinit
from .sweeps import agent, sweep

#: The current run, set by ``init`` and cleared by ``finish``.
run: Run | None = None
#: The current run's config and summary (usable after ``init``).
config = _Preinit("config")
summary = _Preinit("summary")

__all__ = [
    "AlertLevel",
    "agent",
    "alert",
    "Api",
    "Artifact",
    "Audio",
    "Histogram",
    "Html",
    "Image",
    "Run",
    "Settings",
    "Table",
    "Video",
    "__version__",
    "config",
    "define_metric",
    "errors",
    "finish",
    "init",
    "log",
    "log_code",
    "mark_preempting",
    "login",
    "plot",
    "require",
    "restore",
    "run",
    "save",
    "setup",
    "summary",
    "sweep",
    "teardown",
    "termerror",
    "termlog",
    "termwarn",
    "unwatch",
    "watch",
]
