"""Replay the confidence cascade (the cheap model, the cross-encoder one only where it is unsure) on the cached
signals of benchmarks/fit_confidence.py, held out per set; prints pooled rates and the share of rows that ask
the cross-encoder, per band. Usage: PIPELINE_LLM__PROVIDER=none .venv/bin/python benchmarks/replay_cascade.py
"""
import json, sys
import numpy as np
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
import fit_confidence as fc
rows = [json.loads(l) for l in open(__import__("pathlib").Path(__file__).resolve().parent / "results" / "confidence" / "signals.jsonl")]
fitted = [r for r in rows if fc.label(r) is not None]
for lo, hi in [(0.0, 1.01), (0.02, 0.98), (0.05, 0.95), (0.1, 0.9), (0.2, 0.8), (1.01, 1.01)]:
    pooled_p, pooled_y, frac = [], [], []
    folds = {}
    for held in fc.SETS:
        train = [r for r in fitted if held not in (r["qset"], r["store"])]
        test = [r for r in fitted if held in (r["qset"], r["store"])]
        fast = fc.fit(*fc.matrix(train, fc.NO_CE)); full = fc.fit(*fc.matrix(train, fc.FEATURES))
        xf, yt = fc.matrix(test, fc.NO_CE); xF, _ = fc.matrix(test, fc.FEATURES)
        pf, pF = fc.predict(fast, xf), fc.predict(full, xF)
        use_full = (pf > lo) & (pf < hi)
        p = np.where(use_full, pF, pf)
        folds[held] = fc.rates(p, yt, 0.5)
        pooled_p.append(p); pooled_y.append(yt); frac.append(use_full)
    r = fc.rates(np.concatenate(pooled_p), np.concatenate(pooled_y), 0.5)
    print(f"band ({lo}, {hi}): CE on {np.concatenate(frac).mean():.3f} of rows; pooled {r}; min answered {min(f['answered'] for f in folds.values()):.3f} min refused {min(f['refused'] for f in folds.values()):.3f}")
