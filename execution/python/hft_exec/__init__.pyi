import numpy as np

from hft_exec._core import (
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
ACTIONS: tuple[str, ...]
EVENT_TYPES: dict[int, str]

def drain_events(executor: Executor) -> np.ndarray: ...
