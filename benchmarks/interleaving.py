"""Interleaving vs A/B on the demo world, through the real gateway: sensitivity and direction.

Builds a demo world (SQLite in a work folder), trains both arms, then serves SIX experiments at
once from one `feedlab serve`, each on its own disjoint sixth of the users (each takes the users
the ones before it leave): an A/B test (50/50) and an interleaving test for each of three
worlds, where the test arm is

- better: control = CatBoost arm, test = sentence-embedding arm (the world hides a taste that
  only post texts show, so the embedding arm is the better ranker);
- equal: both arms the CatBoost arm (an A/A test);
- worse: the two models swapped.

`feedlab simulate`'s engine drives every user for the same days with likes drawn from the
world's hidden preference model; then `feedlab analyze --format json` analyses all six.

Sensitivity (better world): users needed to detect the effect at 80% power (two-sided, 5%),
from each design's own observed effect and standard error at the same days of traffic:
    A/B (HitRate, Welch):      N_ab = n_ab * ((z_.975 + z_.8) * SE(diff) / diff)^2   (both arms)
    interleaving (Δ, t-test):  N_il = n_il * ((z_.975 + z_.8) * SE(Δ) / Δ)^2
since an SE shrinks as 1/sqrt(users). The ratio N_ab / N_il is the sensitivity gain; the range
beside N_ab takes the A/B diff at the ends of its 95% CI (its effect is the noisier estimate).

Direction: the interleaving verdict's sign against the A/B HitRate lift, per world.

    flock /work/heavy.lock .venv/bin/python benchmarks/interleaving.py [--users 3000] [--days 3]
        [--dir DIR (reuse a built world and its artifacts)] [--seed 0] [--clients 3]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from feedlab.storage.demo import simulate as sim  # noqa: E402
from feedlab.storage.engine import make_engine  # noqa: E402
from scipy import stats  # noqa: E402

from feedlab.demo import feedlab_cmd, serve_args, train_cmd, training_cutoff  # noqa: E402
from feedlab.processes import free_port, serve_subprocess  # noqa: E402

WORLDS = {
    "better": ("control", "test"),
    "equal": ("control", "control"),
    "worse": ("test", "control"),
}
Z = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)


def config_text(artifacts: Path) -> str:
    """Six experiments, each taking 1/6 of all users: experiment k takes 1/(6-k) of the users
    the ones before it leave (traffic is drawn on its own salt among those left)."""
    blocks = []
    for k, (name, design) in enumerate((w, d) for w in WORLDS for d in ("ab", "il")):
        control, test = WORLDS[name]
        traffic = round(100 / (6 - k), 4)
        if design == "ab":
            arms = (
                f"      - {{name: control, model: {control}, weight: 50}}\n"
                f"      - {{name: test, model: {test}, weight: 50}}\n"
            )
            extra = ""
        else:
            arms = (
                f"      - {{name: control, model: {control}}}\n"
                f"      - {{name: test, model: {test}}}\n"
            )
            extra = "    design: interleaving\n"
        blocks.append(
            f"  - name: {design}_{name}\n    status: running\n    salt: bench-{design}-{name}\n"
            f"    traffic: {traffic}\n{extra}    arms:\n{arms}"
        )
    return (
        "default_model: control\nexperiments:\n"
        + "".join(blocks)
        + f'models:\n  control: {{backend: inprocess, artifact: "{artifacts}/control"}}\n'
        f'  test: {{backend: inprocess, artifact: "{artifacts}/test"}}\n'
    )


def run(cmd: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[3:])} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def build(workdir: Path, args: argparse.Namespace, env: dict[str, str]) -> Path:
    """World, spec and both arms' artifacts in `workdir` (kept: a rerun with --dir reuses them)."""
    spec = workdir / "world.json"
    artifacts = workdir / "artifacts"
    if not (artifacts / "test" / "meta.json").exists():
        world = ["--users", str(args.users), "--posts", str(args.posts), "--seed", str(args.seed)]
        run(
            feedlab_cmd("demo-data", *world, "--taste", str(args.taste), "--spec-out", str(spec)),
            env,
        )
        t0 = training_cutoff(env["FEEDLAB_DATABASE_URL"])
        for arm in ("control", "test"):
            run(train_cmd(arm, artifacts / arm, "--t0", t0.isoformat(), "--iterations", "200"), env)
    return artifacts


def simulate_all(
    url: str, spec: Path, args: argparse.Namespace, db_url: str
) -> sim.SimulationSummary:
    """Every user of the world, split over a few client threads (disjoint users, same days)."""
    engine = make_engine(db_url)
    try:
        plan = sim.demo_plan(engine, spec)
    finally:
        engine.dispose()
    users = plan.user_ids
    chunks = [users[k :: args.clients] for k in range(args.clients)]
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
                seed=args.seed + k,
                progress=False,
            )
        )

    threads = [threading.Thread(target=drive, args=(k,)) for k in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = results[0]
    for r in results[1:]:
        total.requests += r.requests
        total.errors += r.errors
        total.users += r.users
    return total


def analyse(name: str, env: dict[str, str]) -> dict:
    out = run(feedlab_cmd("analyze", name, "--format", "json", "--bootstrap", "200"), env)
    (phase,) = json.loads(out)["phases"]
    return phase


def ab_summary(phase: dict) -> dict:
    (comp,) = phase["comparisons"]
    m = next(m for m in comp["metrics"] if m["metric"] == "hitrate")["test"]
    se = (m["ci_high"] - m["ci_low"]) / (2 * stats.norm.ppf(0.975))
    n = sum(phase["users"].values())
    return {
        "n": n,
        "diff": m["diff"],
        "lo": m["ci_low"],
        "hi": m["ci_high"],
        "se": se,
        "lift": m["lift"],
        "p": m["p_value"],
    }


def il_summary(phase: dict) -> dict:
    p = phase["preference"]
    se = p["delta_sd"] / math.sqrt(p["users"])
    return {
        "n": p["users"],
        "delta": p["delta"],
        "lo": p["delta_ci_low"],
        "hi": p["delta_ci_high"],
        "se": se,
        "p": p["t_p"],
        "share": p["share"],
        "wins": p["wins"],
        "ties": p["ties"],
        "losses": p["losses"],
        "balance_flagged": phase["balance_flagged"],
        "fallbacks": phase["fallbacks"],
    }


def needed(n: int, se: float, effect: float) -> float:
    return n * (Z * se / effect) ** 2 if effect else math.inf


def needed_range(a: dict) -> tuple[float, float]:
    """Users needed at the two ends of the effect's CI (unbounded when it includes 0)."""
    near, far = sorted((abs(a["lo"]), abs(a["hi"])))
    if a["lo"] <= 0 <= a["hi"]:
        return needed(a["n"], a["se"], far), math.inf
    return needed(a["n"], a["se"], far), needed(a["n"], a["se"], near)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=3000)
    ap.add_argument("--posts", type=int, default=600)
    ap.add_argument("--days", type=int, default=3)
    ap.add_argument("--taste", type=float, default=1.2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--clients", type=int, default=3)
    ap.add_argument("--dir", type=Path, help="work folder to keep (and reuse) world + artifacts")
    args = ap.parse_args()
    workdir = args.dir or Path(tempfile.mkdtemp(prefix="feedlab-il-"))
    workdir.mkdir(parents=True, exist_ok=True)
    db_url = f"sqlite:///{workdir / 'bench.db'}"
    env = {**os.environ, "FEEDLAB_DATABASE_URL": db_url, "HF_HUB_OFFLINE": "1"}
    started = time.monotonic()
    artifacts = build(workdir, args, env)
    built = time.monotonic() - started
    config = workdir / "bench.yaml"
    config.write_text(config_text(artifacts.resolve()))
    port = free_port()
    with serve_subprocess(
        serve_args(config, port, workdir / "spool"), env, port, workdir / "gateway.log", timeout=600
    ):
        t = time.monotonic()
        summary = simulate_all(f"http://127.0.0.1:{port}", workdir / "world.json", args, db_url)
        simulated = time.monotonic() - t
    ab = {w: ab_summary(analyse(f"ab_{w}", env)) for w in WORLDS}
    il = {w: il_summary(analyse(f"il_{w}", env)) for w in WORLDS}
    report(args, summary, ab, il, built, simulated)


def report(args, summary, ab: dict, il: dict, built: float, simulated: float) -> None:
    print(
        f"\ndemo world: {args.users} users, {args.posts} posts, taste {args.taste}, seed "
        f"{args.seed}; {args.days} days x 3 requests/user/day; {summary.requests} requests, "
        f"{summary.errors} errors (build {built / 60:.1f} min, simulation {simulated / 60:.1f} min)"
    )
    print("\nSensitivity (test better): users needed for 80% power at the same days of traffic")
    print(f"{'design':<14}{'users':>7}{'effect [95% CI]':>32}{'p':>10}{'users needed':>26}")
    a, i = ab["better"], il["better"]
    n_ab = needed(a["n"], a["se"], a["diff"])
    rng_ab = needed_range(a)
    n_il = needed(i["n"], i["se"], i["delta"])
    print(
        f"{'A/B HitRate':<14}{a['n']:>7}{a['diff']:>+10.4f} [{a['lo']:+.4f}, {a['hi']:+.4f}]"
        f"{a['p']:>10.3g}{n_ab:>12,.0f} ({_fmt(rng_ab[0])}–{_fmt(rng_ab[1])})"
    )
    print(
        f"{'interleaving':<14}{i['n']:>7}{i['delta']:>+10.4f} [{i['lo']:+.4f}, {i['hi']:+.4f}]"
        f"{i['p']:>10.3g}{n_il:>12,.0f}"
    )
    print(
        f"ratio A/B / interleaving: {n_ab / n_il:.1f}x fewer users with interleaving "
        f"(range {rng_ab[0] / n_il:.1f}x–{rng_ab[1] / n_il:.1f}x over the A/B diff's CI)"
    )
    print("\nDirection agreement (A/B HitRate lift vs interleaving Δ credited likes per user)")
    print(
        f"{'world':<8}{'A/B lift':>10}{'A/B p':>9}{'Δ/user':>9}{'IL p':>9}"
        f"{'prefer test':>13}{'w/t/l':>14}{'balance':>9}{'agree':>7}"
    )
    for w in WORLDS:
        a, i = ab[w], il[w]
        wtl = f"{i['wins']}/{i['ties']}/{i['losses']}"
        if w == "equal":
            agree = i["p"] >= 0.05 or math.copysign(1, i["delta"]) == math.copysign(1, a["diff"])
        else:
            agree = math.copysign(1, i["delta"]) == math.copysign(1, a["diff"])
        print(
            f"{w:<8}{a['lift']:>+10.1%}{a['p']:>9.3g}{i['delta']:>+9.3f}{i['p']:>9.3g}"
            f"{i['share']:>13.1%}{wtl:>14}"
            f"{'FLAG' if i['balance_flagged'] else 'ok':>9}{'yes' if agree else 'NO':>7}"
        )


def _fmt(x: float) -> str:
    return "∞" if not math.isfinite(x) else f"{x:,.0f}"


if __name__ == "__main__":
    main()
