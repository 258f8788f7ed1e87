from typing import Any

import numpy as np

from hft_exec._core import (
    ACTIONS as ACTIONS,
)
from hft_exec._core import (
    EVENT_TYPES as EVENT_TYPES,
)
from hft_exec._core import (
    REASONS as REASONS,
)
from hft_exec._core import (
    TICKS_PER_UNIT as TICKS_PER_UNIT,
)
from hft_exec._core import (
    Executor as Executor,
)
from hft_exec._core import (
    ExecutorConfig as ExecutorConfig,
)
from hft_exec._core import (
    PaperExchangeConfig as PaperExchangeConfig,
)
from hft_exec._core import (
    RiskConfig as RiskConfig,
)
from hft_exec._core import (
    StrategyConfig as StrategyConfig,
)
from hft_exec._core import (
    VenueConfig as VenueConfig,
)
from hft_exec._core import (
    layout as layout,
)
from hft_exec._core import (
    next_signal as next_signal,
)
from hft_exec._core import (
    order_quantity as order_quantity,
)
from hft_exec._core import (
    target_size as target_size,
)

PREDICTION_DTYPE: np.dtype
DECISION_DTYPE: np.dtype
EVENT_DTYPE: np.dtype
# IntEnums built at import from the core's names (members: ACTIONS, EVENT_TYPES, REASONS), so untyped here.
Action: Any
EventType: Any
Reason: Any

def drain_events(executor: Executor) -> np.ndarray: ...
