"""Interleaving vs A/B on the demo world, through the real gateway: sensitivity and direction.

One demo world (`feedlab demo-data`, both arms trained on its history, as `make demo` does) is
copied into several *universes*. Each universe is a fresh copy of the world's database and its
own `feedlab serve`, and `feedlab simulate`'s engine drives every user of the world (or
--sample of them) through it for the same days, likes drawn from the world's hidden preference
model:

- `control`, `test`: everyone served one arm (the two halves of an A/B test);
- `il`: an interleaving experiment, control = CatBoost arm, test = sentence-embedding arm
  (the world hides a taste only post texts show, so test is the better ranker);
- `il_swapped`: the same with the models swapped (the test arm is worse);
- `aa`: four A/A interleaving experiments (both arms the CatBoost model) on disjoint quarters of
  the users.

Every universe replays the same request schedule (same seed, same users), so each user appears
in all of them: the comparison of designs is paired by user, which is what makes the A/B effect
measurable at a size this machine can simulate.

Sensitivity: users needed to detect test > control at 80% power (two-sided, 5%), from each
design's per-user effect and variance at the same days of traffic:
    A/B (HitRate, 50/50, Welch):  N_ab = 2 z^2 (sd_c^2 + sd_t^2) / diff^2      (both arms)
    interleaving (Δ, t-test):     N_il = z^2 sd_Δ^2 / Δ^2,   z = z_.975 + z_.8
sd_c, sd_t: per-user HitRate spread in `control`, `test` (what a real A/B test's users show);
diff: the mean of each user's HitRate under test minus under control (paired, so the
between-user spread cancels from the effect estimate, not from N_ab); sd_Δ, Δ: per-user credited
likes test - control in `il`. The CI of N_ab / N_il is a percentile bootstrap over users (each
draw resamples users and takes all three universes' values of each drawn user). When the A/B
diff's CI includes 0 the ratio has no upper bound and only its lower bound is a statement. A
subsampling check draws experiments of N_ab (A/B: disjoint halves from `control` and `test`) and
N_il users from the simulated ones and counts how often each is significant: ~80% if the
formulas hold.

Direction: the interleaving verdict (t-test on Δ, 5%) against the A/B HitRate lift on all users
(paired t-test; the equal world's lift compares random halves of `control`, an A/A test).

Each universe's per-user results go to DIR/universes/NAME.json; a run skips the universes
already there and starts none that would likely end after --budget minutes, so the heavy part
runs a few universes at a time and every run prints the report from all of them:

    .venv/bin/python benchmarks/interleaving.py [--dir DIR]
        [--run control,test,il,aa,il_swapped]   # a subset per run; --run '' only reports
        [--users 1000] [--posts 600] [--iterations 40] [--taste 1.2] [--seed 0] [--days 3]
        [--sample N (simulate N of the world's users)] [--budget 14 (minutes)]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from feedlab.analysis.online.interleaving import analyze_interleaving, user_credits  # noqa: E402
from feedlab.storage.demo import simulate as sim  # noqa: E402
from feedlab.storage.engine import make_engine  # noqa: E402
from feedlab.storage.schema import LIKE, exposure_items, exposures, feed  # noqa: E402
from scipy import stats  # noqa: E402
from sqlalchemy import Engine, select  # noqa: E402

from feedlab.demo import feedlab_cmd, serve_args, train_cmd, training_cutoff  # noqa: E402
from feedlab.processes import free_port, serve_subprocess  # noqa: E402

Z = float(stats.norm.ppf(0.975) + stats.norm.ppf(0.8))
ALPHA = 0.05
WINDOW_S = 3600.0
N_BOOT = 2000
SERVED_ALONE = ("control", "test")
ALL = "control,test,il,aa,il_swapped"
AA_RUNS = 4


def experiments_of(universe: str) -> dict[str, tuple[str, str]]:
    """The interleaving experiments of a universe, name -> (control model, test model); none for
    a universe served by one arm alone. `aa` holds AA_RUNS A/A experiments on disjoint users."""
    if universe in SERVED_ALONE:
        return {}
    if universe in ("il", "il_swapped"):
        return {"il": ("control", "test") if universe == "il" else ("test", "control")}
    if universe == "aa":
        return {f"aa{k}": ("control", "control") for k in range(1, AA_RUNS + 1)}
    raise SystemExit(f"--run: unknown universe {universe!r} (control, test, il, il_swapped, aa)")


def config_text(universe: str, artifacts: Path) -> str:
    """Every user served by the universe's arm, or split evenly over its interleaving
    experiments: experiment k of n takes 1/(n-k) of the users the ones before it leave."""
    exps = experiments_of(universe)
    models = sorted({m for arms in exps.values() for m in arms} or {universe})
    blocks = ""
    for k, (name, (control, test)) in enumerate(exps.items()):
        blocks += (
            f"  - name: {name}\n    status: running\n    salt: bench-{universe}-{name}\n"
            f"    traffic: {round(100 / (len(exps) - k), 4)}\n    design: interleaving\n"
            f"    arms:\n      - {{name: control, model: {control}}}\n"
            f"      - {{name: test, model: {test}}}\n"
        )
    return (
        f"default_model: {models[0]}\nexperiments:{' []' if not blocks else ''}\n{blocks}"
        "models:\n"
        + "".join(f'  {m}: {{backend: inprocess, artifact: "{artifacts}/{m}"}}\n' for m in models)
    )


def run(cmd: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[3:])} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def build(workdir: Path, args: argparse.Namespace) -> dict:
    """The world (workdir/world.db, world.json) and both arms' artifacts, built once: later
    runs with the same --dir reuse them (world.meta.json records how they were made)."""
    meta_path = workdir / "world.meta.json"
    if meta_path.exists():
        return json.loads(meta_path.read_text())
    db = workdir / "world.db"
    env = {**os.environ, "FEEDLAB_DATABASE_URL": f"sqlite:///{db}", "HF_HUB_OFFLINE": "1"}
    started, load_before = time.monotonic(), load()
    world = ["--users", str(args.users), "--posts", str(args.posts), "--seed", str(args.seed)]
    spec = workdir / "world.json"
    run(feedlab_cmd("demo-data", *world, "--taste", str(args.taste), "--spec-out", str(spec)), env)
    t0 = training_cutoff(env["FEEDLAB_DATABASE_URL"])
    for arm in SERVED_ALONE:
        out = workdir / "artifacts" / arm
        run(train_cmd(arm, out, "--t0", t0.isoformat(), "--iterations", str(args.iterations)), env)
    meta = {
        "users": args.users,
        "posts": args.posts,
        "seed": args.seed,
        "taste": args.taste,
        "iterations": args.iterations,
        "minutes": (time.monotonic() - started) / 60,
        "load": f"{load_before} → {load()}",
    }
    meta_path.write_text(json.dumps(meta))
    return meta


def simulate_all(url: str, db_url: str, spec: Path, args: argparse.Namespace, clients: int):
    """The world's users (or --sample of them, the same ones in every universe), split over a
    few client threads (disjoint users, same days, the same schedule for the same seed)."""
    engine = make_engine(db_url)
    try:
        plan = sim.demo_plan(engine, spec)
    finally:
        engine.dispose()
    users = sim.sample_users(plan.user_ids, args.sample or len(plan.user_ids), args.seed)
    chunks = [users[k::clients] for k in range(clients)]
    results: list[sim.SimulationSummary] = []

    def drive(k: int) -> None:
        results.append(
            sim.simulate(
                url,
                chunks[k],
                plan.judge,
                start=plan.start,
                days=args.days,
                requests_per_day=3,
                seed=args.seed * 64 + k,
                progress=False,
            )
        )

    threads = [threading.Thread(target=drive, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    requests, errors = sum(r.requests for r in results), sum(r.errors for r in results)
    return plan.start, requests, errors


def user_hitrates(engine: Engine, start: datetime) -> dict[str, list]:
    """Per user: exposures and hits (an exposure with at least one credited like), by the A/B
    analysis's rule: a like goes to the latest exposure of that post to that user at most the
    window before it."""
    e, i, f = exposures.c, exposure_items.c, feed.c
    with engine.connect() as conn:
        shown = conn.execute(
            select(e.request_id, e.user_id, e.fallback).where(e.qa.is_(False))
        ).all()
        items = conn.execute(select(i.request_id, i.user_id, i.post_id, i.ts)).all()
        likes = conn.execute(
            select(f.user_id, f.post_id, f.timestamp).where(f.action == LIKE, f.timestamp >= start)
        ).all()
    served: dict[tuple[int, int], list[tuple[datetime, str]]] = {}
    for rid, user, post, ts in items:
        served.setdefault((user, post), []).append((ts, rid))
    window = timedelta(seconds=WINDOW_S)
    hit: set[str] = set()
    for user, post, at in likes:
        before = [s for s in served.get((user, post), []) if s[0] <= at < s[0] + window]
        if before:
            hit.add(max(before)[1])
    per_user: dict[int, list[int]] = {}
    for rid, user, _ in shown:
        row = per_user.setdefault(int(user), [0, 0])
        row[0] += 1
        row[1] += rid in hit
    ids = sorted(per_user)
    return {
        "user_ids": ids,
        "exposures": [per_user[u][0] for u in ids],
        "hits": [per_user[u][1] for u in ids],
        "fallbacks": sum(1 for s in shown if s.fallback),
    }


def interleaving_result(engine: Engine, experiment: str) -> dict:
    """The real analysis's verdict and, for the bootstrap, its per-user credits."""
    report = analyze_interleaving(engine, experiment, n_boot=200)
    (phase,) = report["phases"]
    arms = (phase["control"], phase["test"])
    with engine.connect() as conn:
        credits = user_credits(conn, experiment, phase["config_version"], arms, WINDOW_S)
    p = phase["preference"]
    return {
        "user_ids": credits.user_ids.tolist(),
        "control": credits.control.tolist(),
        "test": credits.test.tolist(),
        "t_p": p["t_p"],
        "delta": p["delta"],
        "share": p["share"],
        "wtl": f"{p['wins']}/{p['ties']}/{p['losses']}",
        "winner": p["winner"],
        "balance_flagged": phase["balance_flagged"],
        "fallbacks": phase["fallbacks"],
    }


def run_universe(name: str, workdir: Path, args: argparse.Namespace) -> dict:
    """Copy the world, serve it, drive every user, read the per-user results; saved as JSON."""
    folder = workdir / "universes"
    folder.mkdir(exist_ok=True)
    db = folder / f"{name}.db"
    db.unlink(missing_ok=True)
    with sqlite3.connect(workdir / "world.db") as src, sqlite3.connect(db) as dst:
        src.backup(dst)
    db_url = f"sqlite:///{db}"
    env = {**os.environ, "FEEDLAB_DATABASE_URL": db_url, "HF_HUB_OFFLINE": "1"}
    config = folder / f"{name}.yaml"
    config.write_text(config_text(name, (workdir / "artifacts").resolve()))
    spool = folder / f"{name}.spool"
    shutil.rmtree(spool, ignore_errors=True)
    port = free_port()
    load_before, started = load(), time.monotonic()
    log = folder / f"{name}.log"
    with serve_subprocess(serve_args(config, port, spool), env, port, log, timeout=600):
        start, requests, errors = simulate_all(
            f"http://127.0.0.1:{port}", db_url, workdir / "world.json", args, 3
        )
    result = {
        "universe": name,
        "seed": args.seed,
        "days": args.days,
        "requests": requests,
        "errors": errors,
        "minutes": (time.monotonic() - started) / 60,
        "load": f"{load_before} → {load()}",
    }
    engine = make_engine(db_url)
    try:
        if name in SERVED_ALONE:
            result |= user_hitrates(engine, start)
        else:
            runs = {exp: interleaving_result(engine, exp) for exp in experiments_of(name)}
            result["runs"] = runs
            result["fallbacks"] = sum(r["fallbacks"] for r in runs.values())
    finally:
        engine.dispose()
    db.unlink()
    (folder / f"{name}.json").write_text(json.dumps(result))
    print(
        f"universe {name}: {requests} requests, {errors} errors in {result['minutes']:.1f} min "
        f"(load {result['load']})",
        flush=True,
    )
    return result


def load_universes(workdir: Path) -> dict[str, dict]:
    folder = workdir / "universes"
    return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}


def hitrate(u: dict) -> tuple[np.ndarray, np.ndarray]:
    ids = np.asarray(u["user_ids"])
    return ids, np.asarray(u["hits"], float) / np.asarray(u["exposures"], float)


def aligned(res: dict[str, dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-user HitRate under control, under test, and interleaving Δ, for users in all three."""
    (ci, hc), (ti, ht) = hitrate(res["control"]), hitrate(res["test"])
    il = res["il"]["runs"]["il"]
    ii = np.asarray(il["user_ids"])
    d = np.asarray(il["test"]) - np.asarray(il["control"])
    common = np.intersect1d(np.intersect1d(ci, ti), ii)
    pick = [np.searchsorted(ids, common) for ids in (ci, ti, ii)]
    return hc[pick[0]], ht[pick[1]], d[pick[2]]


def needed(hc: np.ndarray, ht: np.ndarray, d: np.ndarray, axis: int | None = None):
    """(N_ab, N_il): users for 80% power, along `axis` for bootstrap draws."""
    diff = (ht - hc).mean(axis=axis)
    var_ab = hc.var(axis=axis, ddof=1) + ht.var(axis=axis, ddof=1)
    with np.errstate(divide="ignore"):
        n_ab = 2 * Z**2 * var_ab / diff**2
        n_il = Z**2 * d.var(axis=axis, ddof=1) / d.mean(axis=axis) ** 2
    return n_ab, n_il


def sensitivity(res: dict[str, dict], seed: int) -> None:
    hc, ht, d = aligned(res)
    n = hc.size
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(N_BOOT, n))
    n_ab, n_il = needed(hc, ht, d)
    b_ab, b_il = needed(hc[idx], ht[idx], d[idx], axis=1)
    b_diff, b_delta = (ht - hc)[idx].mean(axis=1), d[idx].mean(axis=1)
    ratio, b_ratio = n_ab / n_il, b_ab / b_il
    q = [2.5, 97.5]
    diff_ci, delta_ci = np.percentile(b_diff, q), np.percentile(b_delta, q)
    with np.errstate(invalid="ignore"):  # draws with a zero effect need infinitely many users
        ab_ci, il_ci, ratio_ci = (np.percentile(x, q) for x in (b_ab, b_il, b_ratio))
        lower = np.percentile(b_ratio, 5)
    bounded = diff_ci[0] > 0 or diff_ci[1] < 0
    print(
        f"\nSensitivity (test better): users needed for 80% power at the same days of traffic; "
        f"{n} users simulated in each of control, test, il; 95% CIs by bootstrap over users "
        f"({N_BOOT} draws)"
    )
    print(f"{'design':<14}{'effect [95% CI]':>30}{'per-user sd':>16}{'users needed [95% CI]':>30}")
    sd_ab = f"{hc.std(ddof=1):.3f}/{ht.std(ddof=1):.3f}"
    print(
        f"{'A/B HitRate':<14}{_ci(ht.mean() - hc.mean(), diff_ci, '+.4f'):>30}{sd_ab:>16}"
        f"{_ci(n_ab, ab_ci if bounded else (ab_ci[0], math.inf), ',.0f'):>30}"
    )
    print(
        f"{'interleaving':<14}{_ci(d.mean(), delta_ci, '+.4f'):>30}{d.std(ddof=1):>16.3f}"
        f"{_ci(n_il, il_ci, ',.0f'):>30}"
    )
    hi = _fmt(ratio_ci[1]) if bounded else "unbounded: the A/B diff's CI includes 0"
    print(
        f"ratio N_ab / N_il = {ratio:.1f}x fewer users with interleaving, 95% CI "
        f"[{ratio_ci[0]:.1f}x, {hi}]; one-sided 95% lower bound "
        f"{lower:.1f}x"
    )
    print(
        "(A/B sd: per-user HitRate in control/test; A/B effect: mean paired per-user HitRate "
        "difference; interleaving: per-user credited likes test - control)"
    )
    print(
        "between-user share of the per-user HitRate variance (the part interleaving's "
        "within-user comparison removes): "
        + ", ".join(f"{arm} {between_share(res[arm]):.0%}" for arm in SERVED_ALONE)
    )
    check_power(hc, ht, d, n_ab, n_il, rng)


def between_share(universe: dict) -> float:
    """Share of the variance of per-user HitRate that is between users: the total minus the
    mean within-user binomial variance of a user's HitRate over its exposures."""
    n = np.asarray(universe["exposures"], float)
    _, hr = hitrate(universe)
    total = hr.var(ddof=1)
    within = np.mean(hr * (1 - hr) / np.maximum(n - 1, 1))
    return float((total - within) / total)


def check_power(hc, ht, d, n_ab: float, n_il: float, rng: np.random.Generator) -> None:
    """Draw experiments of the planned sizes from the simulated users; count significant ones."""
    draws, n = 2000, hc.size
    out = []
    if math.isfinite(n_ab) and 4 <= round(n_ab) <= n:
        k = round(n_ab) // 2
        pick = np.argsort(rng.random((draws, n)), axis=1)[:, : 2 * k]
        p = stats.ttest_ind(ht[pick[:, :k]], hc[pick[:, k:]], axis=1, equal_var=False).pvalue
        out.append(f"A/B at {2 * k} users: {np.mean(p < ALPHA):.0%}")
    else:
        out.append(f"A/B at {_fmt(n_ab)} users: not checked (more than the {n} simulated)")
    if 2 <= round(n_il) <= n:
        pick = np.argsort(rng.random((draws, n)), axis=1)[:, : round(n_il)]
        p = stats.ttest_1samp(d[pick], 0.0, axis=1).pvalue
        out.append(f"interleaving at {round(n_il)} users: {np.mean(p < ALPHA):.0%}")
    print(f"check, share of {draws} subsampled experiments significant: " + "; ".join(out))


def ab_lift(control: np.ndarray, test: np.ndarray, paired: bool) -> tuple[float, float]:
    """(relative HitRate lift, p): paired t-test over users, or Welch for disjoint users."""
    lift = test.mean() / control.mean() - 1
    if paired:
        return lift, float(stats.ttest_rel(test, control).pvalue)
    return lift, float(stats.ttest_ind(test, control, equal_var=False).pvalue)


def sign(p: float, effect: float) -> int:
    return 0 if p >= ALPHA else (1 if effect > 0 else -1)


def direction(res: dict[str, dict], seed: int) -> None:
    print(
        "\nDirection agreement: interleaving verdict (t-test on Δ, 5%) vs the A/B HitRate lift "
        "on all users"
    )
    print(
        f"{'world':<7}{'run':<12}{'users':>6}{'A/B lift':>10}{'A/B p':>9}{'Δ/user':>9}"
        f"{'IL p':>9}{'prefer test':>13}{'w/t/l':>14}{'balance':>9}{'verdict':>9}{'agree':>7}"
    )
    rows: list[tuple[str, str, str, tuple[float, float]]] = []
    if {"control", "test"} <= res.keys():
        (ci, hc), (ti, ht) = hitrate(res["control"]), hitrate(res["test"])
        common = np.intersect1d(ci, ti)
        hc, ht = hc[np.searchsorted(ci, common)], ht[np.searchsorted(ti, common)]
        rows.append(("better", "il", "il", ab_lift(hc, ht, True)))
        rows.append(("worse", "il_swapped", "il", ab_lift(ht, hc, True)))
    aa_lift = (math.nan, 1.0)  # one model in both arms: no lift, unless `control` measures one
    if "control" in res:
        _, hc = hitrate(res["control"])
        half = np.random.default_rng(seed).permutation(hc.size) < hc.size // 2
        aa_lift = ab_lift(hc[half], hc[~half], False)
    rows += [("equal", "aa", name, aa_lift) for name in experiments_of("aa")]
    for world, universe, name, (lift, ab_p) in rows:
        if universe not in res:
            continue
        i = res[universe]["runs"][name]
        verdict = {"test": "test", "control": "control", None: "none"}[i["winner"]]
        agree = sign(i["t_p"], i["delta"]) == sign(ab_p, lift)
        print(
            f"{world:<7}{name if universe == 'aa' else universe:<12}{len(i['user_ids']):>6}"
            f"{'—' if math.isnan(lift) else format(lift, '+.1%'):>10}"
            f"{'—' if math.isnan(lift) else format(ab_p, '.3g'):>9}"
            f"{i['delta']:>+9.3f}{i['t_p']:>9.3g}{i['share']:>13.1%}{i['wtl']:>14}"
            f"{'FLAG' if i['balance_flagged'] else 'ok':>9}{verdict:>9}"
            f"{'yes' if agree else 'NO':>7}"
        )
    aa = list(res["aa"]["runs"].values()) if "aa" in res else []
    if aa:
        d = np.concatenate([np.asarray(a["test"]) - np.asarray(a["control"]) for a in aa])
        pooled = stats.ttest_1samp(d, 0.0)
        hits = sum(a["t_p"] < ALPHA for a in aa)
        print(
            f"equal world: {hits} of {len(aa)} A/A runs significant at 5%; pooled over their "
            f"{d.size} user-runs Δ = {d.mean():+.4f} likes/user, p = {pooled.pvalue:.3g} "
            "(the equal world's A/B lift compares random halves of `control`)"
        )


def report(workdir: Path, meta: dict, seed: int) -> None:
    res = load_universes(workdir)
    print(
        f"\ndemo world: {meta['users']} users, {meta['posts']} posts, taste {meta['taste']}, "
        f"seed {meta['seed']}, arms trained with {meta['iterations']} iterations "
        f"(build {meta['minutes']:.1f} min, load {meta['load']})"
    )
    for name, u in res.items():
        extra = f", {u['fallbacks']} fallbacks"
        print(
            f"  {name:<11} {u['days']} days x 3 requests/user/day, {u['requests']} requests, "
            f"{u['errors']} errors{extra}, {u['minutes']:.1f} min, load {u['load']}"
        )
    if {"control", "test", "il"} <= res.keys():
        sensitivity(res, seed)
    direction(res, seed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, help="work folder, kept and reused (default: a new one)")
    ap.add_argument("--run", default=ALL, help=f"universes to simulate (default {ALL})")
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--posts", type=int, default=600)
    ap.add_argument("--iterations", type=int, default=40)
    ap.add_argument("--taste", type=float, default=1.2)
    ap.add_argument("--days", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sample", type=int, help="simulate this many of the world's users")
    ap.add_argument(
        "--budget",
        type=float,
        default=14.0,
        help="minutes: start no universe that would likely end later (rerun for the rest)",
    )
    args = ap.parse_args()
    args.dir = args.dir or Path(tempfile.mkdtemp(prefix="feedlab-il-"))
    args.dir.mkdir(parents=True, exist_ok=True)
    universes = [u for u in args.run.split(",") if u]
    for u in universes:
        experiments_of(u)
    started = time.monotonic()
    meta = build(args.dir, args)
    done = load_universes(args.dir)
    todo = [u for u in universes if u not in done]
    last = 0.0
    for k, u in enumerate(todo):
        # an interleaved universe asks two models per request: allow it twice the time
        two = bool(experiments_of(u)) and not experiments_of(todo[k - 1])
        guess = last * (2 if two else 1)
        if (time.monotonic() - started) / 60 + guess > args.budget:
            print(f"left for a later run (--budget {args.budget} min): {','.join(todo[k:])}")
            break
        last = run_universe(u, args.dir, args)["minutes"]
    report(args.dir, meta, args.seed)


def _ci(x: float, ci, fmt: str) -> str:
    return f"{format(x, fmt)} [{_fmt(ci[0], fmt)}, {_fmt(ci[1], fmt)}]"


def _fmt(x: float, fmt: str = ",.0f") -> str:
    return "∞" if not math.isfinite(x) else format(x, fmt)


if __name__ == "__main__":
    main()
