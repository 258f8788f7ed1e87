"""Online learning after a regime change: daily retraining (the champion warm-started on the newest sessions,
through the gate) against a frozen champion, on the synthetic market whose predictable drift turns from mean
reversion to trend following (:class:`hft.data.sources.synthetic.SyntheticConfig` ``regime_change``).

Run from the repository root (``make bench-online``, about 5 minutes on 2 cores)::

    .venv/bin/python bench/online_learning.py [--tickers 4] [--predictability 0.15] [--sessions 10] [--epochs 3]
                                               [--days 15] [--json PATH]

A champion is trained (default settings, walk-forward, as ``hft train``) on the sessions before the change
(2024-01-02 to 2024-02-29); then :func:`hft.model.online.replay` runs ``--days`` sessions from 2024-03-01: each
evening the model in place is warm-started on the newest ``--sessions`` sessions (the last held out), the gate
decides, and the next session is scored with the model the gate left and with the frozen champion. The baseline
measured in the same run is the frozen champion; the figure is the AUC of each per session and how many
sessions daily retraining needs to be back above 0.5 (the frozen one never is: it has the market backwards).
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import date, datetime, timezone
from pathlib import Path

CHANGE = date(2024, 3, 1)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tickers", type=int, default=4)
    p.add_argument("--predictability", type=float, default=0.15, help="before the change; after it, the negative")
    p.add_argument("--sessions", type=int, default=10)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--days", type=int, default=15)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)

    import numpy as np

    from hft.data.sources.synthetic import SyntheticConfig, SyntheticSource
    from hft.features.definitions import FeatureSpec
    from hft.features.reference import compute_features
    from hft.model.config import ModelConfig
    from hft.model.dataset import prepare
    from hft.model.network import WeightsFile
    from hft.model.online import replay, replay_table
    from hft.model.training import train

    tickers = [f"T{i:02d}" for i in range(args.tickers)]
    market = SyntheticConfig(predictability=args.predictability, seed=args.seed, regime_change=CHANGE,
                             predictability_after=-args.predictability)
    started = time.perf_counter()
    bars = SyntheticSource(market).fetch(tickers, datetime(2024, 1, 2, tzinfo=timezone.utc),
                                         datetime(2024, 4, 1, tzinfo=timezone.utc), "1m")
    frame, features = prepare(compute_features(bars, FeatureSpec.from_env()))
    before = frame[frame["date"] < CHANGE].reset_index(drop=True)
    config = ModelConfig()
    champion = train(before, features, config)
    trained_s = time.perf_counter() - started
    print(f"champion: trained on {before['date'].nunique()} sessions before {CHANGE} in {trained_s:.0f} s, "
          f"holdout AUC {champion.evaluation.scores['model']['auc']}")
    start = WeightsFile(config, features, champion.scaler, champion.model.get_weights(), [])
    after = frame[frame["date"] < sorted(d for d in frame["date"].unique() if d >= CHANGE)[args.days]]
    t0 = time.perf_counter()
    days = replay(after, champion.model, start, args.days, args.sessions, args.epochs)
    print(replay_table(days))
    frozen = np.array([d.frozen_auc for d in days])
    online = np.array([d.online_auc for d in days])
    back = next((i + 1 for i, d in enumerate(days) if d.online_auc > 0.5 and all(x.online_auc > 0.5 for x in days[i:])), None)
    print(f"frozen champion: mean AUC {frozen.mean():.4f} over {len(days)} sessions after the change; daily retraining "
          f"{online.mean():.4f} (last 5: {online[-5:].mean():.4f}); above 0.5 for good from session {back}; "
          f"{sum(d.promoted for d in days)} promotions; {time.perf_counter() - t0:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"settings": vars(args) | {"json": str(args.json)}, "days": [d.__dict__ for d in days],
                                         "frozen_mean": frozen.mean(), "online_mean": online.mean(),
                                         "recovered_from_session": back}, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
