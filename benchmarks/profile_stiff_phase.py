"""Where a large run spends its stiff phase: every factorization of the float32 BDF.

Usage: python benchmarks/profile_stiff_phase.py K N SEED [MAX_SECONDS [REUSE]]

Runs one Glorot run (erf) with one BLAS thread, logging each Jacobian (Hessian) and each
factorization of I - c J with its c, and prints their counts and seconds and how many
consecutive factorizations with the same J had c within 30 % of each other (what a
CVODE-style rule that keeps a factorization while c changes little would save).
REUSE > 0 applies that rule (keep the factor while |c / c_factor - 1| <= REUSE), so that
its end point can be compared with the default one. Writes prof_*.json and end_*.npy to
the current directory. Timings: run it on an idle machine.

Measured 2026-12-02 (k = 70, n = 32, seed 0, idle 2-core machine, one BLAS thread): 38 s
in all; 303 factorizations (all float32 Cholesky) 19.1 s, 147 Hessians 7.1 s. Of 155
consecutive factorizations with the same Jacobian only 13 had c within 30 % of the one
before: 92 were step halvings (ratio 0.5) after failed Newton solves, most of the rest
growths of up to 10x. Keeping the factor while c changes by <= 30 % (REUSE = 0.3) saves
those 13 (33 s, same end point to round-off). What causes the halvings:
benchmarks/diagnose_bdf_newton.py.
"""
import os
import sys, time, json

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"  # one BLAS thread, as the sweep workers run (before numpy loads)
import numpy as np
import copyaverage.ode as ode
from copyaverage.sweep import RunSpec
from copyaverage.flow import gradient_flow

k, n, seed = map(int, sys.argv[1:4])
max_time = float(sys.argv[4]) if len(sys.argv) > 4 else 3600
reuse = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
log = dict(lu=[], jac=[])
orig_init = ode.Float32BDF.__init__
def init(self, *a, **kw):
    orig_init(self, *a, **kw)
    lu0 = self.lu
    jac0 = self.jac
    state = {"J": None, "jid": 0}
    def jac(t, y):
        t0 = time.perf_counter(); J = jac0(t, y); dt = time.perf_counter() - t0
        state["J"] = J; state["jid"] += 1
        log["jac"].append(dict(t=float(t), sec=dt))
        return J
    cache = {}
    def lu(A):
        J = state["J"] if state["J"] is not None else self.J
        dj = np.diag(J); i = int(np.argmax(np.abs(dj)))
        c = float((1.0 - A[i, i]) / dj[i])
        if reuse and cache.get("J") is J and abs(c / cache["c"] - 1) <= reuse:
            log["lu"].append(dict(jid=state["jid"], c=c, sec=0.0, kind="reused"))
            return cache["f"]
        t0 = time.perf_counter(); f = lu0(A); dt = time.perf_counter() - t0
        cache.update(J=J, c=c, f=f)
        log["lu"].append(dict(jid=state["jid"], c=c, sec=dt, kind=f[0]))
        return f
    self.lu = lu
    self.jac = jac
ode.Float32BDF.__init__ = init

spec = RunSpec("erf", k, n, seed, "glorot")
a0, W0 = spec.start()
t0 = time.perf_counter()
r = gradient_flow(a0, W0, spec.teacher(), "erf", max_time=max_time, **dict(spec.options))
wall = time.perf_counter() - t0
print(json.dumps(dict(wall=wall, converged=r.converged, loss=r.loss, grad=r.grad_norm,
                      stats={k: v for k, v in r.stats.items()}, timings=r.timings), default=str))
lu = log["lu"]; jac = log["jac"]
print("LUs", len(lu), "sec", sum(x["sec"] for x in lu), "jacs", len(jac), "sec", sum(x["sec"] for x in jac))
# consecutive c ratios with the same Jacobian
ratios = [lu[i]["c"] / lu[i-1]["c"] for i in range(1, len(lu)) if lu[i]["jid"] == lu[i-1]["jid"]]
ratios = np.array(ratios)
print("same-J consecutive LUs", len(ratios), "within 30%:", int(np.sum(np.abs(ratios - 1) < 0.3)),
      "ratio quantiles", np.quantile(ratios, [0.1, 0.25, 0.5, 0.75, 0.9]) if len(ratios) else None)
print("reused", sum(1 for x in lu if x["kind"] == "reused"))
print("end point", np.round(r.a[:4], 10))
np.save(f"end_{k}_{n}_{seed}_{reuse}.npy", np.concatenate([r.a, r.W.ravel()]))
json.dump(log, open(f"prof_{k}_{n}_{seed}_{reuse}.json", "w"))
