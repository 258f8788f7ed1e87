"""The C++ executor (``hft_exec._core``) with the NumPy record layouts it shares.

Predictions go in and decisions come out either one at a time (:meth:`Executor.on_prediction`) or as
structured arrays with no copies (:meth:`Executor.on_predictions` over :data:`PREDICTION_DTYPE` into
:data:`DECISION_DTYPE`). Prices are integer ticks (:data:`TICKS_PER_UNIT` per currency unit) and quantities
integer shares everywhere past the input. The executor's outbox (:data:`EVENT_DTYPE`) is its journal:
replaying it with :meth:`Executor.recover` restores a crashed executor exactly.
"""

from __future__ import annotations

import enum

import numpy as np

from hft_exec._core import (
    ACTIONS,
    EVENT_TYPES,
    REASONS,
    TICKS_PER_UNIT,
    Executor,
    ExecutorConfig,
    PaperExchangeConfig,
    RiskConfig,
    StrategyConfig,
    VenueConfig,
    layout,
    next_signal,
    order_quantity,
    target_size,
)

__all__ = [
    "ACTIONS",
    "Action",
    "EventType",
    "Reason",
    "DECISION_DTYPE",
    "EVENT_DTYPE",
    "EVENT_TYPES",
    "PREDICTION_DTYPE",
    "REASONS",
    "TICKS_PER_UNIT",
    "Executor",
    "ExecutorConfig",
    "PaperExchangeConfig",
    "RiskConfig",
    "StrategyConfig",
    "VenueConfig",
    "drain_events",
    "layout",
    "next_signal",
    "order_quantity",
    "target_size",
]

#: hft_exec::Prediction
PREDICTION_DTYPE = np.dtype(
    [
        ("ts_ns", "<i8"),
        ("recv_ns", "<i8"),
        ("instrument", "<u4"),
        ("reserved", "<u4"),
        ("probability", "<f8"),
        ("price", "<f8"),
        ("volatility", "<f8"),
    ]
)
#: hft_exec::Decision (action: ACTIONS index; reason: REASONS index)
DECISION_DTYPE = np.dtype(
    [
        ("ts_ns", "<i8"),
        ("order_id", "<u8"),
        ("qty", "<i8"),
        ("price", "<i8"),
        ("target", "<i8"),
        ("instrument", "<u4"),
        ("action", "u1"),
        ("reason", "u1"),
        ("reserved", "<u2"),
    ]
)
#: hft_exec::Event (type: EVENT_TYPES key; reason: REASONS index)
EVENT_DTYPE = np.dtype(
    [
        ("ts_ns", "<i8"),
        ("order_id", "<u8"),
        ("price", "<i8"),
        ("qty", "<i8"),
        ("fee", "<i8"),
        ("bar_ts_ns", "<i8"),
        ("instrument", "<u4"),
        ("type", "u1"),
        ("reason", "u1"),
        ("venue", "<u2"),
    ]
)

#: Codes of the records' ``action``, ``type`` and ``reason`` fields as IntEnums (compare them with the NumPy
#: columns: ``events["type"] == EventType.fill``). Names and numbers both come from the C++ core.
Action = enum.IntEnum("Action", {name: code for code, name in enumerate(ACTIONS)})
EventType = enum.IntEnum("EventType", {name: code for code, name in EVENT_TYPES.items()})
Reason = enum.IntEnum("Reason", {name: code for code, name in enumerate(REASONS)})


def drain_events(executor: Executor) -> np.ndarray:
    """The executor's outbox since the last drain, as an :data:`EVENT_DTYPE` array (then cleared)."""
    return np.frombuffer(executor.drain_events(), dtype=EVENT_DTYPE)
