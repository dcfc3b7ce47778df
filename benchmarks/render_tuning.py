"""docs/quality.md's retrieval-stage and tuning sections (dense / hybrid / rerank per set, BM25 scope,
parent evidence, ensembles, matcher threshold, fusion sweep), from benchmarks/results/{stages,tuning}/."""

from __future__ import annotations

import json
from typing import Any

from render_common import DATASETS, ROOT, f3, load_tuning

STAGES = ROOT / "benchmarks" / "results" / "stages"
STAGE_SETS = DATASETS + ("mini_squadv2",)
STAGE_ORDER = ("dense", "hybrid", "dense+rerank", "hybrid+rerank")
TARGET = (0.97, 0.88)
STAGE_CHOICES = """**Defaults chosen from these numbers** (one configuration for every dataset, nothing tuned per set):

- *Hybrid on* (`retrieval.hybrid=true`, `hybrid_fusion=relative`, `dense_weight=0.7`, BM25 over the
  parents' self-references, `bm25_scope=parents`): with MiniLM it raises MRR@10 on every dev set (mean
  0.783 → 0.817) and on mini_squadv2 (0.457 → 0.499); hit@10 moves both ways (history_of_alexnet gains
  four questions of 160, blockchain_solana loses one of 58). In the sweep below (BM25 over every
  collection), `relative` at dense weight 0.7 has the best mean hit@10 over the dev sets and an MRR@10
  within 0.003 of the best weight (0.6); `rrf` and `dbsf` are lower on MRR. BM25 over the parents only
  ranks as well as over every collection (mean 0.960 / 0.811 against 0.959 / 0.813, last table but two)
  and scores ~18× fewer points, which is what embedded Qdrant's brute-force sparse search pays for.
- *Support on* (`retrieval.support_weight=0.1`): a parent's dense score is its best reference plus 0.1 ×
  its next two, so a parent several chunks match beats one lucky chunk. Replayed first (summed-evidence
  table below), then measured here: hybrid MRR@10 0.798 → 0.812 (alexnet), 0.851 → 0.856 (solana),
  0.785 → 0.784 (essay); hit@10 0.956 → 0.963 and 0.948 → 0.966, the essay unchanged at 0.977;
  mini_squadv2 0.503 → 0.499. The MiniLM rows above include it (`config.support_weight` in each results file).
- *Rerank off by default* (`retrieval.rerank=false`): blended with the first stage, the cross-encoder
  moves MRR@10 by −0.013 to +0.029 per dev set, −0.003 on average with hybrid (+0.017 on dense alone),
  for ~0.5 s a query on one core. It stays one flag away (`query --rerank`, `"rerank": true`), and the
  extractive answer uses it to pick sentences.
- *MiniLM stays the default embedder*: bge-small (int8, 12 layers) is not better here. Mean over the
  dev sets, hit@10 / MRR@10, same defaults: dense 0.952 / 0.771 against MiniLM's 0.966 / 0.783; hybrid
  0.962 / 0.804 against 0.968 / 0.817 (an earlier run with BM25 over every collection and no support
  had it at 0.954 / 0.816 against 0.959 / 0.813); on mini_squadv2 it is lower in every variant. A store built with it keeps it (`PIPELINE_EMBED__MODEL=bge-small`
  for a new store).
- *Target not met*: the issue asks hit@10 ≥ 0.97 and MRR@10 ≥ 0.88 on each dev set; the default
  reaches 0.963–0.977 / 0.784–0.856. The last table shows where much of the rest lies: the reference
  passages are about as long as a parent and often straddle two; judged at 40 % instead of 50 % of
  the passage, the same rankings score MRR@10 0.835 / 0.871 / 0.911.

Both embedders' rows are measured with the defaults above (`config` in each results file). Latencies
are on the eval stores, written by qdrant-client's local mode (the edge engine gives the same hit and
MRR, docs/benchmarks.md §7d, at a few ms a search).
"""


def render_stages() -> list[str]:
    """The retrieval-stage ablation: eval --variants runs per dataset and embedder (benchmarks/results/stages/)."""
    runs: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(STAGES.glob("*.json")):
        rep = json.loads(path.read_text())
        runs[(rep["dataset"], rep["config"]["embed"])] = rep
    if not runs:
        return []
    embeds = sorted({e for _, e in runs})
    out = [
        "## Retrieval stages: dense, hybrid BM25, cross-encoder rerank (LLM off)\n",
        "Text references only (`PIPELINE_LLM__PROVIDER=none`: child chunks and parent self-references), mode `chunk` "
        "(with the LLM off, `all` searches the same references). *dense*: cosine only; *hybrid*: BM25 vectors searched "
        "beside the dense ones and the two parent rankings fused; *+rerank*: the top candidates re-scored by the "
        "ms-marco MiniLM-L-12 cross-encoder. Each cell is hit@10 / MRR@10 (hit@2 / MRR@2 and latency in the tables "
        "below); p50 / p95 is the retrieve latency in ms at k=10, embedded Qdrant, query embedding included, "
        "on this shared 2-core machine. "
        f"Target from issue 10: hit@10 ≥ {TARGET[0]} and MRR@10 ≥ {TARGET[1]} on each of the three dev sets; "
        "mini_squadv2 is reported beside them (its references come from an older Wikipedia revision).\n",
    ]
    header = "| dataset | embedder | " + " | ".join(STAGE_ORDER) + " |"
    out += [header, "|" + "---|" * (2 + len(STAGE_ORDER))]
    for ds in STAGE_SETS:
        for emb in embeds:
            rep = runs.get((ds, emb))
            if rep is None:
                continue
            cells = []
            for v in STAGE_ORDER:
                r = rep["results"].get(f"chunk/{v}")
                cells.append("—" if r is None else f"{r['hit@10']:.3f} / {r['mrr@10']:.3f}")
            out.append(f"| {ds} | {emb} | " + " | ".join(cells) + " |")
    for emb in embeds:
        cells = []
        for v in STAGE_ORDER:
            rs = [runs[(ds, emb)]["results"].get(f"chunk/{v}") for ds in DATASETS if (ds, emb) in runs]
            rs = [r for r in rs if r]
            cells.append("—" if len(rs) < len(DATASETS) else f"{sum(r['hit@10'] for r in rs) / len(rs):.3f} / {sum(r['mrr@10'] for r in rs) / len(rs):.3f}")
        out.append(f"| **mean of the three dev sets** | {emb} | " + " | ".join(cells) + " |")
    out.append("")
    out.append(STAGE_CHOICES + "\n")
    out += ["| dataset | embedder | variant | hit@2 | MRR@2 | hit@10 | MRR@10 | p50 ms | p95 ms |", "|---|---|---|---|---|---|---|---|---|"]
    for ds in STAGE_SETS:
        for emb in embeds:
            rep = runs.get((ds, emb))
            if rep is None:
                continue
            for key, r in rep["results"].items():
                out.append(
                    f"| {ds} | {emb} | {key} | {r['hit@2']:.3f} | {r['mrr@2']:.3f} | {r['hit@10']:.3f} | {r['mrr@10']:.3f} "
                    f"| {r['latency_ms_p50']:.0f} | {r['latency_ms_p95']:.0f} |"
                )
    any_rep = next(iter(runs.values()))
    cfg = any_rep["config"]
    dates = sorted({r["date"][:10] for r in runs.values()})
    out.append(
        f"\nSettings: hybrid fusion `{cfg.get('hybrid_fusion')}` with dense weight {cfg.get('dense_weight')}, rerank of "
        f"{cfg.get('rerank_candidates')} candidates on {cfg.get('rerank_passages')} passage(s) each, blended with the "
        f"first-stage score at weight {cfg.get('rerank_first_stage_weight', 0.5)}. Command, per dataset and embedder: "
        "`PIPELINE_LLM__PROVIDER=none PIPELINE_EMBED__MODEL=EMBEDDER python -m pipeline eval ../shared/corpus/llama_datasets/DATASET "
        "--modes chunk --variants dense,hybrid,dense+rerank,hybrid+rerank --top-k 2,10` (batch: `benchmarks/eval_stages.sh`). "
        f"Date: {', '.join(dates)}.\n"
    )
    out += render_fusion_sweep()
    out += render_bm25_scope()
    out += render_parent_evidence()
    out += render_ensemble()
    out += render_matcher_threshold()
    return out


def render_bm25_scope() -> list[str]:
    """benchmarks/tune_bm25_scope.py: BM25 over every collection, the children only, or the parents only."""
    data = load_tuning("bm25_scope")
    if data is None:
        return []
    keys = sorted(data)
    names = list(next(iter(data.values())))
    out = [
        "### Where BM25 runs (hit@10 / MRR@10, mode chunk, MiniLM)\n",
        "`all-w`: BM25 over every collection of the mode (the sweep above); `children-w`: the child chunks only; "
        "`parents-w`: the parents' self-references only (`retrieval.bm25_scope=parents`, the default). The "
        "children collection holds ~17 points per parent and embedded Qdrant scores sparse vectors point by point, "
        "so `parents` costs about 1/18 of `all` there (docs/benchmarks.md §4b). Command: "
        "`PIPELINE_LLM__PROVIDER=none python benchmarks/tune_bm25_scope.py DATASET STORE ... --out "
        "benchmarks/results/tuning/bm25_scope.json`.\n",
        "| scope | " + " | ".join(k.split("__")[0] for k in keys) + " | mean |",
        "|---|" + "---|" * (len(keys) + 1),
    ]
    for name in names:
        vals = [data[k][name] for k in keys]
        mean = (sum(v["hit@10"] for v in vals) / len(vals), sum(v["mrr@10"] for v in vals) / len(vals))
        out.append(f"| {name} | " + " | ".join(f"{v['hit@10']:.3f} / {v['mrr@10']:.3f}" for v in vals) + f" | {mean[0]:.3f} / {mean[1]:.4f} |")
    return out + [""]


def render_parent_evidence() -> list[str]:
    """Two more levers replayed by benchmarks/tune_parent_evidence.py: summed evidence, cross-encoder on parent text."""
    data = load_tuning("parent_evidence")
    if data is None:
        return []
    sets = list(data)
    names = list(data[sets[0]]["table"])
    mean = {n: sum(data[s]["table"][n]["mrr@10"] for s in sets) / len(sets) for n in names}
    best = sorted(names, key=lambda n: -mean[n])[:5]
    shown = ["g0.0-w0.7-bmall0", *[n for n in ("g0.1-w0.7-bmall0", "g0.0-w0.7-bmall0+ce10-b0.0", "g0.0-w0.7-bmall0+ce10-b0.5") if n in names]]
    shown += [n for n in best if n not in shown]
    out = ["### Summed evidence and a cross-encoder on the parent's text (hit@10 / MRR@10, mode chunk, MiniLM)\n",
           "Replayed by `benchmarks/tune_parent_evidence.py` over each query's cached references and cross-encoder logits: "
           "`gG` adds G × the parent's next two reference scores to its best (0 = today); `wW` is the hybrid dense weight; "
           "`bmall1` runs BM25 over every collection; `+ceN-bB` re-scores the first N parents by the best of their 160-word "
           "windows (the parent's own text, not its best reference) blended B : 1−B with the first stage. First row: the "
           "default; then named rows; then the five best by mean MRR@10.\n",
           "| configuration | " + " | ".join(s.split("__")[0] for s in sets) + " | mean MRR@10 |",
           "|---|" + "---|" * (len(sets) + 1)]
    for n in shown:
        out.append(f"| `{n}` | " + " | ".join(f"{data[s]['table'][n]['hit@10']:.3f} / {data[s]['table'][n]['mrr@10']:.3f}" for s in sets)
                   + f" | {mean[n]:.3f} |")
    out.append("\nNo configuration reaches MRR@10 0.88 on each set; the best single one gains +0.014 on the mean, and the "
               "best per set differ (alexnet prefers w 0.6, solana a pure cross-encoder order, the essay neither). What became "
               "a default is the free part: `g0.1` (`retrieval.support_weight=0.1`, no extra search, no model); the cross-encoder "
               "on parent windows costs ~6 windows a candidate and stays out. Results: `benchmarks/results/tuning/parent_evidence.json`.\n")
    return out


def render_ensemble() -> list[str]:
    """Both offline embedders fused (benchmarks/tune_ensemble.py): the lever 2 question asked once more."""
    data = load_tuning("ensemble")
    if data is None:
        return []
    sets = list(data)
    dev = [s for s in sets if "squad" not in s]
    names = list(data[sets[0]]["table"])
    out = ["### Both embedders together (hit@10 / MRR@10, mode chunk, default retrieval of each store)\n",
           "Replayed by `benchmarks/tune_ensemble.py`: each question's default top-20 parents from a MiniLM store and from a "
           "bge-small store of the same dataset, min-max normalised and summed, MiniLM's share w (`both-wW`). A store "
           "would hold both vectors of every reference and a query would embed twice. The mean is over the three dev sets.\n",
           "| ranking | " + " | ".join(sets) + " | dev mean MRR@10 |", "|---|" + "---|" * (len(sets) + 1)]
    for n in names:
        m = sum(data[s]["table"][n]["mrr@10"] for s in dev) / len(dev)
        out.append(f"| `{n}` | " + " | ".join(f"{data[s]['table'][n]['hit@10']:.3f} / {data[s]['table'][n]['mrr@10']:.3f}" for s in sets)
                   + f" | {m:.3f} |")
    means = {n: sum(data[s]["table"][n]["mrr@10"] for s in dev) / len(dev) for n in names}
    base, best = names[0], max(names[2:], key=lambda n: means[n])
    first = data[sets[0]]
    out.append(f"\nNot adopted: the best fusion (`{best}`) moves the dev mean MRR@10 by {means[best] - means[base]:+.3f} over "
               f"MiniLM alone and costs hit@10 on history_of_alexnet, for twice the embedding at ingest and per query; every set "
               f"stays below MRR@10 0.88. Command: `PIPELINE_LLM__PROVIDER=none {first['command']} --out "
               f"benchmarks/results/tuning/ensemble.json` ({first['date'][:16]}).\n")
    return out


def render_matcher_threshold() -> list[str]:
    """The same default rankings judged at lower relevance thresholds (benchmarks/eval_matcher_threshold.py)."""
    data = load_tuning("matcher_threshold")
    if data is None:
        return []
    thresholds = list(next(iter(data.values()))["thresholds"])
    out = ["### Where the remaining gap lies: the relevance label (hit@10 / MRR@10, default configuration)\n",
           "The reference contexts of these sets are long (median 3,111 / 2,589 / 4,360 characters for alexnet / "
           "solana / the essay; a 1024-token parent holds ~4–5k), so one often straddles two parents, and the matcher "
           "calls relevant only a parent holding ≥ 50 % of its windows. Below, the rankings of the default configuration "
           "(mode chunk, k=10, LLM off) judged again with lower thresholds. **The metric stays 0.5** (all tables above and "
           "the issue's target use it); this only shows how much of the distance to MRR@10 0.88 is returned parents that "
           "hold 20–49 % of the passage a question was written from.\n",
           "| dataset | " + " | ".join(f"≥ {float(t):.0%}" for t in thresholds) + " |", "|---|" + "---|" * len(thresholds)]
    for key, entry in data.items():
        out.append(f"| {key.split('__')[0]} | " + " | ".join(f"{entry['thresholds'][t]['hit@10']:.3f} / {entry['thresholds'][t]['mrr@10']:.3f}" for t in thresholds) + " |")
    first = next(iter(data.values()))
    out.append(f"\nCommand: `PIPELINE_LLM__PROVIDER=none {first['command']} --out benchmarks/results/tuning/matcher_threshold.json` ({first['date'][:16]}).\n")
    return out


def render_fusion_sweep() -> list[str]:
    """benchmarks/tune_hybrid.py: every fusion method and weight, and rerank depth/blend, replayed offline."""
    data = load_tuning("hybrid")
    if data is None:
        return []
    keys = sorted(data, key=lambda k: (k.split("__")[1], k))
    embeds = sorted({k.split("__")[1] for k in keys})
    names = list(dict.fromkeys(n for k in keys for n in data[k]["table"] if "+rerank" not in n and not n.startswith("pooled")))
    out = [
        "### Fusion and rerank sweep (MRR@10, mode chunk)\n",
        "Replayed offline by `benchmarks/tune_hybrid.py` over the same stores (one search per query, cached "
        "cross-encoder scores). `hybrid-relative-w`: min-max normalised scores, dense weight w; `dbsf`: normalised "
        "by mean ± 3σ; `rrf`: reciprocal ranks (k=60). Rerank rows: `+rerank-n10-p1-bB` re-scores the top 10 with "
        "the best passage of each, keeping share B of the first-stage score. The means are over the three dev sets "
        "(mini_squadv2 shown, not averaged). The bge-small columns come from an earlier replay without "
        "mini_squadv2 and without the 0.7-weight rerank rows.\n",
        "| variant | " + " | ".join(k.replace("__", " ") for k in keys) + " | " + " | ".join(f"dev mean {e}" for e in embeds) + " |",
        "|---|" + "---|" * (len(keys) + len(embeds)),
    ]
    rerank_rows = list(dict.fromkeys(n for k in keys for n in data[k]["table"] if "+rerank" in n and "-n10-p1-" in n))
    for name in names + rerank_rows:
        vals = [data[k]["table"].get(name, {}).get("mrr@10") for k in keys]
        means = []
        for e in embeds:
            dev = [data[k]["table"].get(name, {}).get("mrr@10") for k in keys if k.endswith(e) and "squad" not in k]
            means.append(sum(dev) / len(dev) if dev and None not in dev else None)
        out.append(f"| {name} | " + " | ".join(f3(v) for v in vals) + " | " + " | ".join(f3(m) for m in means) + " |")
    return out + [""]


def render_tuning() -> list[str]:
    """Offline replays from benchmarks/tune_scoring.py and benchmarks/tune_variants.py (benchmarks/results/tuning/)."""
    tuning = ROOT / "benchmarks" / "results" / "tuning"
    scoring = sorted(p for p in tuning.glob("*.json") if not p.stem.endswith("__variants") and p.stem not in ("hybrid", "bm25_scope", "parent_evidence", "matcher_threshold", "ensemble"))
    variants = sorted(tuning.glob("*__variants.json"))
    if not scoring and not variants:
        return []
    out = ["## Tuning: offline replays\n",
           "How a parent is scored from its references, replayed over the same fetched references (100 per kind, "
           "as top_k 10 × overfetch 10) by `benchmarks/tune_scoring.py`; MRR@10 per mode. `max`: best reference "
           "(default); `rrf_collections`: reciprocal-rank fusion of the per-collection rankings (`fusion=rrf`); "
           "`rrf_kinds`: RRF over the six kinds; `sum_topN`: mean of the N best references; `max+w·kinds`: best "
           "reference plus w × the mean of the other kinds' best. The `max` row reproduces `eval` exactly.\n"]
    for path in scoring:
        data = json.loads(path.read_text())
        rules = data["rules"]
        names = list(next(iter(rules.values())))
        out.append(f"**{path.stem.replace('__', ', LLM ')}**\n")
        out.append("| rule | " + " | ".join(rules) + " |")
        out.append("|---|" + "---|" * len(rules))
        for name in names:
            out.append(f"| {name} | " + " | ".join(f"{rules[m][name]['mrr@10']:.3f}" for m in rules) + " |")
        out.append("")
    if variants:
        out.append("Ingest-side choices replayed by `benchmarks/tune_variants.py` (one vector or several per parent, cosine "
                   "to the query, best per parent; MRR@10 / hit@10). `parent_mean` is our windowed parent embedding "
                   "(= base), `parent_first` what a truncating embedder sees, `parent_maxwin` one vector per window; "
                   "`questions_5` our five question nodes, `questions_1` the questions joined in one node, `meta_1` "
                   "summary and questions in one node.\n")
        datasets = [json.loads(p.read_text()) | {"_name": p.stem.replace("__variants", "").replace("__", ", LLM ")} for p in variants]
        names = list(datasets[0]["variants"])
        out.append("| variant | " + " | ".join(d["_name"] for d in datasets) + " |")
        out.append("|---|" + "---|" * len(datasets))
        for name in names:
            cells = [f"{d['variants'][name]['mrr@10']:.3f} / {d['variants'][name]['hit@10']:.3f}" if name in d["variants"] else "—" for d in datasets]
            out.append(f"| {name} | " + " | ".join(cells) + " |")
        out.append("")
    return out
