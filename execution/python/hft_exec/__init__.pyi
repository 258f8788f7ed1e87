import enum

import numpy as np

from hft_exec._core import (
    ACTIONS as ACTIONS,
    EVENT_TYPES as EVENT_TYPES,
    REASONS as REASONS,
    TICKS_PER_UNIT as TICKS_PER_UNIT,
    Executor as Executor,
    ExecutorConfig as ExecutorConfig,
    PaperExchangeConfig as PaperExchangeConfig,
    RiskConfig as RiskConfig,
    StrategyConfig as StrategyConfig,
    layout as layout,
    next_signal as next_signal,
    order_quantity as order_quantity,
    target_size as target_size,
)

PREDICTION_DTYPE: np.dtype
DECISION_DTYPE: np.dtype
EVENT_DTYPE: np.dtype
Action: type[enum.IntEnum]
EventType: type[enum.IntEnum]
Reason: type[enum.IntEnum]

def drain_events(executor: Executor) -> np.ndarray: ...
