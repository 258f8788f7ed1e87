"""The hft_exec module's contract with NumPy and its guarantees on bad input and the kill switch."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest

import hft_exec

BAR_NS = 60 * 10**9
T0 = 20_000 * 86_400 * 10**9 + 14 * 3_600 * 10**9  # 14:00 UTC, well inside one UTC day


def executor(instruments: int = 2, **risk) -> hft_exec.Executor:
    cfg = hft_exec.ExecutorConfig()
    r = cfg.risk
    for name, value in risk.items():
        setattr(r, name, value)
    cfg.risk = r
    return hft_exec.Executor(cfg, instruments)


def predictions(n: int, instruments: int = 2) -> np.ndarray:
    """n bars round-robin over instruments, probabilities swinging between long and short: many orders."""
    k = np.arange(n)
    p = np.zeros(n, dtype=hft_exec.PREDICTION_DTYPE)
    p["ts_ns"] = T0 + (k // instruments + 1) * BAR_NS
    p["recv_ns"] = p["ts_ns"] + 1_000_000
    p["instrument"] = k % instruments
    p["probability"] = np.where((k // instruments) % 3 == 0, 0.8, np.where((k // instruments) % 3 == 1, 0.2, 0.5))
    p["price"] = 100.0 + (k % 7) * 0.05
    p["volatility"] = 0.004
    return p


# ------------------------------------------------------------------------------------------------ layout


@pytest.mark.parametrize(
    ("record", "dtype"),
    [("Prediction", hft_exec.PREDICTION_DTYPE), ("Decision", hft_exec.DECISION_DTYPE), ("Event", hft_exec.EVENT_DTYPE)],
)
def test_layout_numpy_dtype_matches_cpp_struct(record, dtype):
    size, fields = hft_exec.layout()[record]
    assert dtype.itemsize == size
    assert dtype.names == tuple(name for name, _, _ in fields)
    for name, offset, field_size in fields:
        field_dtype, field_offset = dtype.fields[name][:2]
        assert (field_offset, field_dtype.itemsize) == (offset, field_size), name


def test_layout_reasons_cover_every_code_with_none_first():
    assert hft_exec.REASONS[0] == "none"
    assert len(set(hft_exec.REASONS)) == len(hft_exec.REASONS) == 18
    by_reason = executor().counters()["by_reason"]
    assert set(by_reason) == set(hft_exec.REASONS[1:])


# --------------------------------------------------------------------------------------- batch interface


def test_on_predictions_structured_arrays_writes_decisions_in_place():
    preds = predictions(400)
    backing = np.zeros(len(preds) + 2, dtype=hft_exec.DECISION_DTYPE)
    backing["ts_ns"] = -7  # sentinels around the window the executor must write into
    out = backing[1:-1]
    address = out.__array_interface__["data"][0]

    batch = executor()
    assert batch.on_predictions(preds, out) is None
    assert out.__array_interface__["data"][0] == address
    assert out.base is backing
    assert backing["ts_ns"][0] == -7 and backing["ts_ns"][-1] == -7  # nothing outside the window
    np.testing.assert_array_equal(out["ts_ns"], preds["ts_ns"])  # the caller's memory holds the results

    single = executor()
    for k, p in enumerate(preds):
        action, reason, order_id, qty, price, target = single.on_prediction(
            int(p["ts_ns"]), int(p["recv_ns"]), int(p["instrument"]), float(p["probability"]), float(p["price"]),
            float(p["volatility"]),
        )
        d = out[k]
        assert (int(d["action"]), int(d["reason"]), int(d["order_id"]), int(d["qty"]), int(d["price"]),
                int(d["target"]), int(d["instrument"])) == (action, reason, order_id, qty, price, target,
                                                             int(p["instrument"])), k
    assert (out["action"] == hft_exec.Action.order).sum() > 20  # the batch really traded
    assert batch.drain_events() == single.drain_events()
    assert (batch.cash, batch.equity, batch.fees, batch.position(0), batch.position(1)) == (
        single.cash, single.equity, single.fees, single.position(0), single.position(1))


def test_on_predictions_longer_decisions_array_leaves_tail_untouched():
    preds = predictions(10)
    out = np.zeros(15, dtype=hft_exec.DECISION_DTYPE)
    executor().on_predictions(preds, out)
    assert (out["ts_ns"][:10] == preds["ts_ns"]).all()
    assert (out["ts_ns"][10:] == 0).all()


def test_on_predictions_empty_arrays_do_nothing():
    ex = executor()
    ex.on_predictions(np.zeros(0, hft_exec.PREDICTION_DTYPE), np.zeros(0, hft_exec.DECISION_DTYPE))
    assert ex.counters()["predictions"] == 0


@pytest.mark.parametrize(
    ("make_preds", "make_out", "message"),
    [
        (lambda: np.zeros(4, np.float64), lambda: np.zeros(4, hft_exec.DECISION_DTYPE), "record size"),
        (lambda: predictions(4), lambda: np.zeros(4, np.int64), "record size"),
        (lambda: np.zeros((2, 6)), lambda: np.zeros(2, hft_exec.DECISION_DTYPE), "1-d"),
        (lambda: predictions(4).reshape(2, 2), lambda: np.zeros(4, hft_exec.DECISION_DTYPE), "1-d"),
        (lambda: predictions(4), lambda: np.zeros((2, 2), hft_exec.DECISION_DTYPE), "1-d"),
        (lambda: predictions(8)[::2], lambda: np.zeros(4, hft_exec.DECISION_DTYPE), "contiguous"),
        (lambda: predictions(4), lambda: np.zeros(8, hft_exec.DECISION_DTYPE)[::2], "contiguous"),
        (lambda: predictions(4), lambda: np.zeros(3, hft_exec.DECISION_DTYPE), "shorter"),
        (lambda: np.zeros(4, hft_exec.EVENT_DTYPE), lambda: np.zeros(4, hft_exec.DECISION_DTYPE), "record size"),
    ],
    ids=["float_predictions", "int_decisions", "2d_floats", "2d_predictions", "2d_decisions",
         "strided_predictions", "strided_decisions", "short_decisions", "event_dtype"],
)
def test_on_predictions_bad_arrays_raise_value_error_with_message(make_preds, make_out, message):
    ex = executor()
    preds, out = make_preds(), make_out()
    with pytest.raises(ValueError, match=message):
        ex.on_predictions(preds, out)
    assert ex.counters()["predictions"] == 0


def test_on_predictions_decision_dtype_as_predictions_raises_value_error():
    # PREDICTION_DTYPE and DECISION_DTYPE are both 48 bytes: the binding must check the fields, not the size.
    wrong = np.zeros(1, hft_exec.DECISION_DTYPE)
    with pytest.raises(ValueError, match="PREDICTION_DTYPE"):
        executor().on_predictions(wrong, np.zeros(1, hft_exec.DECISION_DTYPE))


def test_recover_bad_event_array_raises_value_error():
    with pytest.raises(ValueError, match="record size"):
        executor().recover(np.zeros(3, hft_exec.DECISION_DTYPE))


# ------------------------------------------------------------------------------------------- bad input

GOOD = {"probability": 0.8, "price": 100.0, "volatility": 0.004}
# (overrides of the prediction after one accepted bar at 100.0 on instrument 0, executor kwargs, reason)
BAD_INPUTS = {
    "probability_nan": ({"probability": math.nan}, {}, "invalid_probability"),
    "probability_negative": ({"probability": -0.01}, {}, "invalid_probability"),
    "probability_above_one": ({"probability": 1.0 + 1e-9}, {}, "invalid_probability"),
    "probability_inf": ({"probability": math.inf}, {}, "invalid_probability"),
    "price_nan": ({"price": math.nan}, {}, "invalid_price"),
    "price_zero": ({"price": 0.0}, {}, "invalid_price"),
    "price_negative": ({"price": -100.0}, {}, "invalid_price"),
    "price_inf": ({"price": math.inf}, {}, "invalid_price"),
    "price_minus_inf": ({"price": -math.inf}, {}, "invalid_price"),
    "price_too_large": ({"price": 1.0e8}, {}, "invalid_price"),
    "price_below_half_tick": ({"price": 4.0e-5}, {}, "invalid_price"),
    "volatility_nan": ({"volatility": math.nan}, {}, "invalid_volatility"),
    "volatility_negative": ({"volatility": -1e-6}, {}, "invalid_volatility"),
    "volatility_inf": ({"volatility": math.inf}, {}, "invalid_volatility"),
    "instrument_unregistered": ({"instrument": 2}, {}, "unknown_instrument"),
    "instrument_max_u32": ({"instrument": 2**32 - 1}, {}, "unknown_instrument"),
    "bar_repeated": ({"ts_ns": T0}, {}, "duplicate_prediction"),
    "bar_older": ({"ts_ns": T0 - BAR_NS}, {}, "duplicate_prediction"),
    "received_too_late": ({"recv_ns": T0 + BAR_NS + 121 * 10**9}, {}, "stale_prediction"),
    "price_jump": ({"price": 111.0}, {}, "price_band"),
    "price_crash": ({"price": 89.0}, {}, "price_band"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_on_prediction_bad_input_rejected_with_reason_counted_never_ordered(case):
    overrides, risk, reason = BAD_INPUTS[case]
    ex = executor(**risk)
    ex.on_prediction(T0, T0, 0, 0.5, 100.0, 0.004)  # flat: a known last price and bar, no order
    ex.drain_events()
    before = ex.counters()
    p = {"ts_ns": T0 + BAR_NS, "recv_ns": T0 + BAR_NS, "instrument": 0, **GOOD, **overrides}
    action, code, order_id, qty, price, _ = ex.on_prediction(**p)

    assert hft_exec.ACTIONS[action] == "reject"
    assert hft_exec.REASONS[code] == reason
    assert (order_id, qty, price) == (0, 0, 0)
    after = ex.counters()
    assert after["by_reason"][reason] == before["by_reason"][reason] + 1
    assert after["rejections"] == before["rejections"] + 1
    assert after["orders"] == before["orders"] == 0
    assert sum(after["by_reason"].values()) == after["rejections"]
    events = hft_exec.drain_events(ex)
    assert not (events["type"] == hft_exec.EventType.order_sent).any()
    assert (ex.position(0), ex.working(0), ex.open_orders(0), ex.last_price(0)) == (0, 0, 0, 100 * 10_000)

    # A bad input never trades later either: the same bar, now valid, is still new unless it was seen.
    retry = ex.on_prediction(T0 + 2 * BAR_NS, T0 + 2 * BAR_NS, 0, **GOOD)
    assert hft_exec.ACTIONS[retry[0]] == "order"


def test_on_predictions_batch_of_bad_inputs_counted_by_reason_and_never_ordered():
    ex = executor()
    ex.on_prediction(T0, T0, 0, 0.5, 100.0, 0.004)
    cases = list(BAD_INPUTS.values())
    preds = np.zeros(len(cases), hft_exec.PREDICTION_DTYPE)
    for k, (overrides, _, _) in enumerate(cases):
        # each on its own later bar (so none is a duplicate of the one before unless it means to be)
        base = {"ts_ns": T0 + BAR_NS * (k + 1), "recv_ns": T0 + BAR_NS * (k + 1), "instrument": 0, **GOOD}
        if "ts_ns" in overrides:
            base["ts_ns"] = overrides["ts_ns"]
        if "recv_ns" in overrides:
            base["recv_ns"] = base["ts_ns"] + 121 * 10**9
        for name, value in {**base, **{k2: v for k2, v in overrides.items() if k2 not in ("ts_ns", "recv_ns")}}.items():
            preds[name][k] = value
    out = np.zeros(len(preds), hft_exec.DECISION_DTYPE)
    ex.on_predictions(preds, out)
    assert [hft_exec.REASONS[r] for r in out["reason"]] == [reason for _, _, reason in cases]
    assert (out["action"] == 2).all() and (out["order_id"] == 0).all() and (out["qty"] == 0).all()
    by_reason = ex.counters()["by_reason"]
    for reason in {reason for _, _, reason in cases}:
        assert by_reason[reason] == sum(1 for _, _, r in cases if r == reason), reason
    assert ex.counters()["orders"] == 0 and ex.open_orders(0) == 0


def test_on_prediction_kill_switch_rejects_and_cancels_working_orders():
    ex = executor()
    first = ex.on_prediction(T0, T0, 0, 0.8, 100.0, 0.004)
    assert hft_exec.ACTIONS[first[0]] == "order" and ex.open_orders(0) == 1  # working: latency not passed
    ex.halt()
    assert ex.halted and ex.halt_reason == "none"  # requested, takes effect at the next decision
    d = ex.on_prediction(T0 + BAR_NS, T0 + BAR_NS, 1, 0.8, 50.0, 0.004)
    assert hft_exec.REASONS[d[1]] == "kill_switch" and hft_exec.ACTIONS[d[0]] == "reject"
    assert ex.halt_reason == "kill_switch" and ex.open_orders(0) == 0 and ex.working(0) == 0
    assert ex.counters()["by_reason"]["kill_switch"] == 1
    ex.resume(T0 + 2 * BAR_NS)
    assert not ex.halted
    d = ex.on_prediction(T0 + 2 * BAR_NS, T0 + 2 * BAR_NS, 1, 0.8, 50.0, 0.004)
    assert hft_exec.ACTIONS[d[0]] == "order"


def test_on_prediction_daily_loss_limit_zero_halts_for_the_day_then_lifts():
    ex = executor(daily_loss_limit=0.0)  # day PnL 0 <= -0: halted at the first accepted bar
    d = ex.on_prediction(T0, T0, 0, 0.8, 100.0, 0.004)
    assert hft_exec.REASONS[d[1]] == "daily_loss_limit" and d[2] == 0
    assert ex.halt_reason == "daily_loss_limit"
    assert ex.counters()["by_reason"]["daily_loss_limit"] == 1
    tomorrow = T0 + 86_400 * 10**9
    d = ex.on_prediction(tomorrow, tomorrow, 0, 0.8, 100.0, 0.004)
    assert hft_exec.REASONS[d[1]] == "daily_loss_limit"  # lifted at the new day, then hit again at once
    assert ex.counters()["orders"] == 0


@pytest.mark.parametrize(
    ("risk", "reason"),
    [
        ({"max_order_notional": 100.0}, "max_order_notional"),
        ({"max_gross_notional": 100.0}, "max_gross_notional"),
        ({"max_open_orders": 0}, "too_many_open_orders"),
        ({"order_burst": 0.0}, "order_rate"),
    ],
)
def test_on_prediction_risk_limit_refuses_order_with_reason(risk, reason):
    ex = executor(**risk)
    action, code, order_id, qty, _, target = ex.on_prediction(T0, T0, 0, 0.8, 100.0, 0.004)
    assert (hft_exec.ACTIONS[action], hft_exec.REASONS[code], order_id, qty) == ("reject", reason, 0, 0)
    assert target > 0  # the target stands, the order does not
    assert ex.counters()["by_reason"][reason] == 1 and ex.counters()["orders"] == 0
    assert ex.working(0) == 0 and ex.open_orders(0) == 0


# ------------------------------------------------------------------------------------- threads and halt


def test_halt_from_other_thread_during_batch_stops_orders():
    preds = predictions(200_000)  # nearly every bar trades: bars 60 s apart refill the order-rate bucket
    watch = 2_000
    landed = 0
    for _attempt in range(3):  # a loaded machine may schedule the operator thread only after the batch
        out = np.zeros(len(preds), dtype=hft_exec.DECISION_DTYPE)
        ex = executor(daily_loss_limit=1e12)

        def operator(ex=ex, out=out):
            # Waits until the batch (running without the GIL) has written decision `watch`, then halts.
            while out["ts_ns"][watch] == 0:
                pass
            ex.halt()

        thread = threading.Thread(target=operator)
        thread.start()
        ex.on_predictions(preds, out)
        thread.join(timeout=30)
        assert not thread.is_alive()
        assert ex.halted

        kill = np.flatnonzero(out["reason"] == hft_exec.REASONS.index("kill_switch"))
        if len(kill) == 0:
            continue  # halt() came after the last decision: nothing to check this time
        landed += 1
        first = kill[0]
        assert first > watch
        assert (out["action"][:first] == 1).sum() > 100  # it was trading before
        assert not (out["action"][first:] == 1).any()  # and not one order after
        assert (out["action"][first:] == 2).all()
        assert ex.halt_reason == "kill_switch"
        assert all(ex.open_orders(i) == 0 and ex.working(i) == 0 for i in range(2))
        break
    assert landed, "halt() never landed inside a batch"


def test_codes_are_exported_by_name_from_the_core():
    """Event types, actions and reasons: names and numbers from the C++ module, none written in Python."""
    from hft_exec import _core

    assert hft_exec.EVENT_TYPES is _core.EVENT_TYPES and hft_exec.ACTIONS is _core.ACTIONS
    assert {e.name: int(e) for e in hft_exec.EventType} == {v: k for k, v in _core.EVENT_TYPES.items()}
    assert hft_exec.EventType.fill == 3 and hft_exec.Action.order == 1 and hft_exec.Reason.kill_switch.name == "kill_switch"
    assert [a.name for a in hft_exec.Action] == ["hold", "order", "reject"]


def test_exec_config_defaults_are_the_core_defaults():
    """Each executor default has one home, the C++ core: ExecConfig() converts back to it exactly."""
    from hft.execution.config import ExecConfig

    ours, core = ExecConfig().to_core(), hft_exec.ExecutorConfig()
    for part in ("strategy", "risk", "exchange"):
        a, b = getattr(ours, part), getattr(core, part)
        names = [n for n in dir(b) if not n.startswith("_")]
        assert names and {n: getattr(a, n) for n in names} == {n: getattr(b, n) for n in names}, part
