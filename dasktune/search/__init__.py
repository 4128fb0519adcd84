"""Search spaces and search algorithms (Ray Tune's names).

``dasktune.search`` holds the search-space domains and constructors
(:mod:`~dasktune.search.sample`), the :class:`Searcher` interface, the default
:class:`BasicVariantGenerator` (grid + random search) and the
:class:`ConcurrencyLimiter` wrapper.  Model-based searchers live in optional
submodules that need extra packages: ``dasktune.search.hyperopt`` and
``dasktune.search.optuna``; they are not imported here.
"""

from __future__ import annotations

from dasktune._names import create_searcher
from dasktune.search.concurrency_limiter import ConcurrencyLimiter
from dasktune.search.repeater import TRIAL_INDEX, Repeater
from dasktune.search.sample import (
    Categorical,
    Domain,
    Float,
    Function,
    Integer,
    SamplingKind,
    choice,
    grid_search,
    lograndint,
    loguniform,
    qlograndint,
    qloguniform,
    qrandint,
    qrandn,
    quniform,
    randint,
    randn,
    sample_from,
    uniform,
)
from dasktune.search.searcher import Searcher
from dasktune.search.variant_generator import (
    BasicVariantGenerator,
    count_variants,
    generate_variants,
    resolve,
)

__all__ = [
    "TRIAL_INDEX",
    "BasicVariantGenerator",
    "Categorical",
    "ConcurrencyLimiter",
    "Domain",
    "Float",
    "Function",
    "Integer",
    "Repeater",
    "SamplingKind",
    "Searcher",
    "choice",
    "count_variants",
    "create_searcher",
    "generate_variants",
    "grid_search",
    "lograndint",
    "loguniform",
    "qlograndint",
    "qloguniform",
    "qrandint",
    "qrandn",
    "quniform",
    "randint",
    "randn",
    "resolve",
    "sample_from",
    "uniform",
]
