# Copyright 2026 The optaxclip authors.
# SPDX-License-Identifier: Apache-2.0
"""Error of AutoClip's streaming percentile against the exact one.

``optaxclip.autoclip(p)`` (``window=None``) estimates the p-th percentile of
*every* gradient norm seen so far with a fixed-size DDSketch (Masson et al.
2019, relative accuracy 1 %). This script runs the jit-compiled
transformation (one ``lax.scan``) on long runs of norms from heavy-tailed
distributions, computes the exact full-history percentile
(``np.percentile``, linear interpolation) at every step in float64, and
reports the relative error of the threshold
``|estimate - exact| / exact`` over all steps.

For comparison it also runs the P-squared algorithm (Jain & Chlamtac, "The
P2 algorithm for dynamic calculation of quantiles and histograms without
storing observations", CACM 28(10), 1985), written here in NumPy from the
paper's equations: five markers, parabolic prediction, linear fallback.

Usage::

  python benchmarks/autoclip_streaming_error.py            # 200,000 norms
  python benchmarks/autoclip_streaming_error.py --steps 20000 --no-p2

Writes ``benchmarks/results/autoclip_streaming_error.{md,json}``.
"""

from __future__ import annotations

import argparse
import bisect
import json
import pathlib
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

import optaxclip

PERCENTILES = (10.0, 50.0, 90.0)
RESULTS = pathlib.Path(__file__).parent / "results"


def distributions(n: int, seed: int = 0) -> dict[str, np.ndarray]:
  """Runs of ``n`` positive norms, heavy-tailed or drifting."""
  rng = np.random.default_rng(seed)
  t = np.arange(n) / n
  spikes = rng.random(n) < 0.01
  return {
    "lognormal(0, 1.5)": rng.lognormal(0.0, 1.5, n),
    "Pareto(1.5)": rng.pareto(1.5, n) + 1.0,
    "Pareto(1.1)": rng.pareto(1.1, n) + 1.0,
    "lognormal(0, 0.3) + 1 % spikes x10^2..10^4": np.where(
      spikes,
      rng.lognormal(0.0, 0.3, n) * 10 ** rng.uniform(2, 4, n),
      rng.lognormal(0.0, 0.3, n),
    ),
    "drift: lognormal(0, 0.5) x 100^-t": rng.lognormal(0.0, 0.5, n) * 100.0**-t,
  }


@jax.jit
def streaming_thresholds(norms: jax.Array, percentile: jax.Array):
  """AutoClip's threshold at every step, and the norms it measured."""
  tx = optaxclip.autoclip(percentile)

  def body(state, n):
    _, state = tx.update(n[None], state)
    s = optaxclip.stats(state)["autoclip"]
    return state, (s.threshold, s.norm_before)

  _, out = jax.lax.scan(body, tx.init(None), norms)
  return out


def exact_percentiles(norms: np.ndarray, ps) -> np.ndarray:
  """np.percentile of norms[:t+1] for every t: (len(ps), len(norms))."""
  s: list[float] = []
  out = np.empty((len(ps), len(norms)))
  qs = [p / 100 for p in ps]
  for t, x in enumerate(norms.tolist()):
    bisect.insort(s, x)
    m = len(s)
    for j, q in enumerate(qs):
      r = q * (m - 1)
      lo = int(r)
      hi = min(lo + 1, m - 1)
      out[j, t] = s[lo] + (r - lo) * (s[hi] - s[lo])
  return out


def p2_estimates(norms: np.ndarray, p: float) -> np.ndarray:
  """P-squared (Jain & Chlamtac 1985) estimate of the p-th percentile.

  Exact (np.percentile of the buffer) for the first five observations.
  """
  q = p / 100
  dn = (0.0, q / 2, q, (1 + q) / 2, 1.0)
  xs = norms.tolist()
  out = np.empty(len(xs))
  h = sorted(xs[:5])
  for t in range(min(5, len(xs))):
    out[t] = np.percentile(xs[: t + 1], p)
  pos = [1, 2, 3, 4, 5]
  for t in range(5, len(xs)):
    x = xs[t]
    if x < h[0]:
      h[0], k = x, 0
    elif x >= h[4]:
      h[4], k = x, 3
    else:
      k = next(i for i in range(1, 5) if x < h[i]) - 1
    for i in range(k + 1, 5):
      pos[i] += 1
    n = t + 1
    for i in (1, 2, 3):
      d = 1 + (n - 1) * dn[i] - pos[i]
      if (d >= 1 and pos[i + 1] - pos[i] > 1) or (
        d <= -1 and pos[i - 1] - pos[i] < -1
      ):
        s = 1 if d > 0 else -1
        par = h[i] + s / (pos[i + 1] - pos[i - 1]) * (
          (pos[i] - pos[i - 1] + s) * (h[i + 1] - h[i]) / (pos[i + 1] - pos[i])
          + (pos[i + 1] - pos[i] - s)
          * (h[i] - h[i - 1])
          / (pos[i] - pos[i - 1])
        )
        if not h[i - 1] < par < h[i + 1]:
          j = i + s
          par = h[i] + s * (h[j] - h[i]) / (pos[j] - pos[i])
        h[i] = par
        pos[i] += s
    out[t] = h[2]
  return out


def summary(est: np.ndarray, exact: np.ndarray) -> dict[str, float]:
  err = np.abs(est - exact) / exact
  return {
    "max": float(err.max()),
    "max_after_1000": float(err[1000:].max()),
    "mean": float(err.mean()),
    "final": float(err[-1]),
  }


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--steps", type=int, default=200_000)
  parser.add_argument("--no-p2", action="store_true")
  args = parser.parse_args()
  t0 = time.perf_counter()
  rows = []
  for dist, raw in distributions(args.steps).items():
    norms32 = jnp.asarray(raw, jnp.float32)
    per_p = {}
    for p in PERCENTILES:
      thr, seen = streaming_thresholds(norms32, jnp.float32(p))
      per_p[p] = np.asarray(thr, np.float64)
    seen = np.asarray(seen, np.float64)  # the norms as measured (float32)
    exact = exact_percentiles(seen, PERCENTILES)
    for j, p in enumerate(PERCENTILES):
      row = {
        "distribution": dist,
        "percentile": p,
        "ddsketch": summary(per_p[p], exact[j]),
      }
      if not args.no_p2:
        row["p2"] = summary(p2_estimates(seen, p), exact[j])
      rows.append(row)
      print(json.dumps(row))
  elapsed = time.perf_counter() - t0
  meta = {
    "steps": args.steps,
    "jax": jax.__version__,
    "device": str(jax.devices()[0]),
    "python": platform.python_version(),
    "seconds": round(elapsed, 1),
  }
  RESULTS.mkdir(exist_ok=True)
  name = "autoclip_streaming_error"
  (RESULTS / f"{name}.json").write_text(
    json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n"
  )
  (RESULTS / f"{name}.md").write_text(markdown(rows, meta))
  print(f"done in {elapsed:.0f} s")


def pct(x: float) -> str:
  return f"{100 * x:.3f} %"


def markdown(rows, meta) -> str:
  lines = [
    "# AutoClip streaming percentile: error against the exact one",
    "",
    f"`benchmarks/autoclip_streaming_error.py`, {meta['steps']:,} norms per "
    f"run, JAX {meta['jax']} on {meta['device']}, {meta['seconds']} s.",
    "",
    "Relative error `|estimate - exact| / exact` of the threshold of",
    "`optaxclip.autoclip(p)` (DDSketch, fixed range, alpha = 1 %, jit +",
    "`lax.scan`, float32) against `np.percentile` of every norm so far",
    "(float64), at every step. `P2` is the P-squared algorithm (Jain &",
    "Chlamtac 1985) on the same norms, for comparison (NumPy float64).",
    "",
    "| distribution | p | sketch max | sketch mean | sketch final "
    "| P2 max | P2 max (t >= 1000) | P2 mean | P2 final |",
    "|---|---|---|---|---|---|---|---|---|",
  ]
  for r in rows:
    d = r["ddsketch"]
    p2 = r.get("p2")
    cells = [r["distribution"], f"{r['percentile']:g}"]
    cells += [pct(d["max"]), pct(d["mean"]), pct(d["final"])]
    if p2:
      cells += [
        pct(p2["max"]),
        pct(p2["max_after_1000"]),
        pct(p2["mean"]),
        pct(p2["final"]),
      ]
    else:
      cells += ["", "", "", ""]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


if __name__ == "__main__":
  main()
